"""Output images behind presigned-looking URLs that expire, as Runflow hands them out.

A URL looks like an S3 presigned GET::

    {base}/storage/runflow-outputs/{run_id}/{index}.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256
        &X-Amz-Date=20260506T100142Z&X-Amz-Expires=3600&X-Amz-Signature=<hex>

and is checked like one: a changed path or parameter answers 403 ``SignatureDoesNotMatch``,
an expired URL 403 ``AccessDenied`` ("Request has expired"), both in S3's XML error form.
The signature is the emulator's own HMAC, not AWS's; only the shape is S3's.

A file is kept ``ttl`` seconds; each URL to it works ``url_ttl`` seconds from when it was
signed. Reading a run signs its URLs afresh, as an API that presigns its storage on every
read does, so a client whose URL expired before it copied the file can read the run again
and get one that works, as long as the file is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

#: Where output files are served, under the emulator's base URL.
STORAGE_PREFIX = "/storage/runflow-outputs"
_SIGNED_PARAMS = ("X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires")
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def _url_expired(query: Mapping[str, str]) -> bool:
    """Whether a signed URL's own lifetime (``X-Amz-Date`` plus ``X-Amz-Expires``) is over."""
    try:
        signed = datetime.strptime(query.get("X-Amz-Date", ""), _DATE_FORMAT).replace(tzinfo=UTC)
        lifetime = float(query.get("X-Amz-Expires", "0"))
    except ValueError:
        return True
    return time.time() > signed.timestamp() + lifetime


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An output image and the Unix time its URL stops working."""

    data: bytes
    content_type: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a file URL is not served: the HTTP status and S3's error code and message."""

    status_code: int
    code: str
    message: str

    def xml(self) -> str:
        """The refusal as S3 words it."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{self.message}</Message></Error>"
        )


class OutputStore:
    """Output files kept for ``ttl`` seconds, behind URLs signed for ``url_ttl`` seconds each."""

    def __init__(self, ttl: float, url_ttl: float | None = None) -> None:
        self._ttl = ttl
        self._url_ttl = ttl if url_ttl is None else url_ttl
        self._key = secrets.token_bytes(32)
        self._files: dict[str, StoredFile] = {}
        self._expired: set[str] = set()

    def put(self, base_url: str, key: str, data: bytes, content_type: str) -> str:
        """Keep ``data`` under ``key`` (``{run_id}/{index}.jpg``); returns its signed URL."""
        now = time.time()
        self._forget_expired(now)
        self._files[key] = StoredFile(data, content_type, now + self._ttl)
        return self._url(base_url, key, now)

    def resign(self, url: str) -> str:
        """``url`` signed again from now, if it is one of this store's; else unchanged."""
        parts = urlsplit(url)
        if not parts.path.startswith(STORAGE_PREFIX + "/"):
            return url
        key = parts.path.removeprefix(STORAGE_PREFIX + "/")
        return self._url(f"{parts.scheme}://{parts.netloc}", key, time.time())

    def _url(self, base_url: str, key: str, now: float) -> str:
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": datetime.fromtimestamp(now, UTC).strftime(_DATE_FORMAT),
            "X-Amz-Expires": str(max(1, math.ceil(self._url_ttl))),
        }
        params["X-Amz-Signature"] = self._sign(key, params)
        return f"{base_url}{STORAGE_PREFIX}/{key}?{urlencode(params)}"

    def get(self, key: str, query: Mapping[str, str]) -> StoredFile | Refusal:
        """The file a URL names, or why it is refused (403 bad or expired URL, 404 unknown)."""
        self._forget_expired(time.time())
        given = query.get("X-Amz-Signature", "")
        expected = self._sign(key, query)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return Refusal(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if key in self._expired or _url_expired(query):
            return Refusal(403, "AccessDenied", "Request has expired")
        stored = self._files.get(key)
        if stored is None:
            return Refusal(404, "NoSuchKey", "The specified key does not exist.")
        return stored

    def _sign(self, key: str, params: Mapping[str, str]) -> str:
        signed = "\n".join([key, *(params.get(name, "") for name in _SIGNED_PARAMS)])
        return hmac.new(self._key, signed.encode(), hashlib.sha256).hexdigest()

    def _forget_expired(self, now: float) -> None:
        # Output bytes dominate memory in long runs, so they go as soon as they expire; the key
        # is remembered so its URL answers "expired" rather than "no such key". Every file
        # lives the same ttl, so insertion order is expiry order and the scan stops early.
        while self._files:
            key, stored = next(iter(self._files.items()))
            if stored.expires_at > now:
                return
            del self._files[key]
            self._expired.add(key)
