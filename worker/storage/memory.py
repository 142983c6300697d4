"""An in-memory store with the same contract as S3, for tests that need no server."""

from __future__ import annotations

import threading
from urllib.parse import quote

from worker.storage.base import ObjectInfo, StorageError


class MemoryStorage:
    """Objects kept in a dict; presigned URLs are ``memory://`` references."""

    def __init__(self, bucket: str = "editq") -> None:
        self.bucket = bucket
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """Store ``data`` under ``key``."""
        with self._lock:
            self._objects[key] = (bytes(data), content_type)
        return ObjectInfo(key, len(data), content_type)

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise StorageError(f"no object {key!r} in bucket {self.bucket!r}")
        return found[0]

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and type, or None."""
        with self._lock:
            found = self._objects.get(key)
        return None if found is None else ObjectInfo(key, len(found[0]), found[1])

    def presign_get(self, key: str, expires_seconds: int) -> str:
        """A ``memory://`` reference (meaningful only inside this process)."""
        return f"memory://{self.bucket}/{quote(key)}?expires={expires_seconds}"

    def presign_put(self, key: str, content_type: str | None, expires_seconds: int) -> str:
        """A ``memory://`` reference (meaningful only inside this process)."""
        return f"memory://{self.bucket}/{quote(key)}?put=1&expires={expires_seconds}"

    def check(self) -> None:
        """Always reachable."""
