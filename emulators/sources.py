"""Fetching a request's source image from an http(s) URL or a ``data:`` URI."""

from __future__ import annotations

import base64
import binascii
import hashlib
from urllib.parse import unquote_to_bytes

import httpx

#: The largest source image accepted, in bytes; fal's own limits are of the same order.
MAX_SOURCE_BYTES = 50 * 1024 * 1024


class SourceUnavailableError(Exception):
    """The source image could not be fetched; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def fetch_source(client: httpx.AsyncClient, url: str) -> bytes:
    """The bytes at ``url`` (http, https or data). Raises :class:`SourceUnavailableError`."""
    if url.startswith("data:"):
        return decode_data_uri(url)
    if not url.startswith(("http://", "https://")):
        raise SourceUnavailableError("only http, https and data URLs are supported")
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if not response.is_success:
                raise SourceUnavailableError(f"HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_SOURCE_BYTES:
                    raise SourceUnavailableError(f"larger than {MAX_SOURCE_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise SourceUnavailableError(type(exc).__name__) from exc
    return b"".join(chunks)


def source_sha256(source: bytes) -> str:
    """The hex sha256 of a fetched source, as the emulators' admin listings show it."""
    return hashlib.sha256(source).hexdigest()


def decode_data_uri(uri: str) -> bytes:
    """The payload of a ``data:[<type>][;base64],<data>`` URI.

    Raises :class:`SourceUnavailableError` if it is malformed or too large.
    """
    header, comma, payload = uri.partition(",")
    if not comma:
        raise SourceUnavailableError("malformed data URI")
    if len(payload) > MAX_SOURCE_BYTES * 4 // 3 + 4:
        raise SourceUnavailableError(f"larger than {MAX_SOURCE_BYTES} bytes")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SourceUnavailableError("malformed base64 in data URI") from exc
    return unquote_to_bytes(payload)
