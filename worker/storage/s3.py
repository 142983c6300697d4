"""S3 (or any S3-compatible server): objects are written through presigned PUT URLs.

boto3 only signs; the bytes travel over httpx, the same way a provider (Runware's
``uploadEndpoint``) writes into our bucket, so one code path is exercised everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from worker.storage.base import ObjectInfo, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: A presigned PUT used at once by ourselves needs only a short life.
_OWN_PUT_SECONDS = 300


class S3Storage:
    """One bucket on an S3-compatible server.

    :param client: signs the URLs editq itself uses, for the endpoint it reaches.
    :param public: signs the URLs editq hands out (API answers, result files, callbacks,
        providers), for the endpoint they reach (``EDITQ_S3_PUBLIC_ENDPOINT_URL``); None
        when that is the same endpoint.
    """

    def __init__(
        self, client: S3Client, http: httpx.Client, bucket: str, public: S3Client | None = None
    ) -> None:
        self._s3 = client
        self._public = public or client
        self._http = http
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """PUT ``data`` to a freshly presigned URL."""
        url = self._presign(self._s3, "put_object", key, _OWN_PUT_SECONDS, content_type)
        try:
            response = self._http.put(url, content=data, headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the object store: {exc}") from exc
        if response.status_code >= 300:
            detail = f"{response.status_code} {response.text[:200]}"
            raise StorageError(f"the object store refused PUT {key!r}: {detail}")
        return ObjectInfo(key, len(data), content_type)

    def get(self, key: str) -> bytes:
        """GET the object through a presigned URL."""
        try:
            url = self._presign(self._s3, "get_object", key, _OWN_PUT_SECONDS)
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the object store: {exc}") from exc
        if response.status_code != 200:
            raise StorageError(f"cannot read {key!r}: {response.status_code}")
        return response.content

    def head(self, key: str) -> ObjectInfo | None:
        """HEAD the object; None when it does not exist."""
        try:
            found = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StorageError(f"cannot look up {key!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach the object store: {exc}") from exc
        return ObjectInfo(key, found["ContentLength"], found.get("ContentType"))

    def presign_get(self, key: str, expires_seconds: int) -> str:
        """A presigned GET URL for someone else, at the public endpoint."""
        return self._presign(self._public, "get_object", key, expires_seconds)

    def presign_put(self, key: str, content_type: str | None, expires_seconds: int) -> str:
        """A presigned PUT URL for someone else (a provider), bound to ``content_type``."""
        return self._presign(self._public, "put_object", key, expires_seconds, content_type)

    def _presign(
        self,
        client: S3Client,
        method: str,
        key: str,
        expires_seconds: int,
        content_type: str | None = None,
    ) -> str:
        params = {"Bucket": self.bucket, "Key": key}
        if content_type is not None:
            params["ContentType"] = content_type
        return client.generate_presigned_url(method, Params=params, ExpiresIn=expires_seconds)

    def check(self) -> None:
        """HEAD the bucket."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"bucket {self.bucket!r} is not reachable: {exc}") from exc
