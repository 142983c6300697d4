"""The storage interface: put through a presigned URL, presign reads, look objects up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """The object store refused or could not be reached."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the store says about one stored object."""

    key: str
    size: int
    content_type: str | None


class Storage(Protocol):
    """A bucket of objects addressed by key."""

    bucket: str

    def put(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """Store ``data`` under ``key`` (through a presigned PUT URL where the store has them)."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes. Raises :class:`StorageError` when it is missing."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size and type, or None when there is no such object."""
        ...

    def presign_get(self, key: str, expires_seconds: int) -> str:
        """A URL anyone may GET the object from until it expires."""
        ...

    def presign_put(self, key: str, content_type: str | None, expires_seconds: int) -> str:
        """A URL to which a third party (a provider) may PUT the object until it expires.

        With ``content_type`` the PUT must send that Content-Type; with None any is accepted
        (a provider whose upload header is not documented).
        """
        ...

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket is reachable (readiness)."""
        ...
