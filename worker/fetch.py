"""Downloading provider outputs safely: http(s) only, no private addresses, bounded size.

A provider's result URL is data from outside; fetching it blindly would let a forged or
compromised result make the worker read internal services (SSRF). Outside development the
worker refuses loopback, private, link-local and reserved addresses.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

Resolver = Callable[[str], list[str]]


class FetchError(Exception):
    """The output could not be downloaded."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        #: True when trying again cannot help (gone, too large, forbidden address).
        self.permanent = permanent


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


class Fetcher:
    """Downloads one URL into memory under the rules above."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        max_bytes: int,
        allow_private: bool,
        resolver: Resolver = _resolve,
    ) -> None:
        self._http = http
        self._max_bytes = max_bytes
        self._allow_private = allow_private
        self._resolve = resolver

    def check_url(self, url: str) -> None:
        """Raise :class:`FetchError` unless ``url`` may be fetched."""
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise FetchError(f"only http(s) URLs are fetched, not {url[:60]!r}", permanent=True)
        if self._allow_private:
            return
        try:
            addresses = self._resolve(parts.hostname)
        except OSError as exc:
            raise FetchError(f"cannot resolve {parts.hostname}: {exc}", permanent=False) from exc
        blocked = [a for a in addresses if not _is_public(a)]
        if blocked:
            raise FetchError(
                f"{parts.hostname} resolves to a non-public address {blocked[0]}; "
                "set EDITQ_ALLOW_PRIVATE_URLS=1 to allow it (development only)",
                permanent=True,
            )

    def fetch(self, url: str) -> bytes:
        """The body of ``url``, or :class:`FetchError`."""
        if url.startswith("data:"):
            return self._decode_data_uri(url)
        self.check_url(url)
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code in {404, 410}:
                    raise FetchError(f"{url} is gone ({response.status_code})", permanent=True)
                if response.status_code != 200:
                    raise FetchError(
                        f"GET {url} answered {response.status_code}",
                        permanent=400 <= response.status_code < 500,
                    )
                return self._read_bounded(response)
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {url} failed: {exc}", permanent=False) from exc

    def _read_bounded(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise FetchError(f"output is larger than {self._max_bytes} bytes", permanent=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode_data_uri(self, uri: str) -> bytes:
        header, _, payload = uri.partition(",")
        if ";base64" not in header:
            raise FetchError("only base64 data URIs are accepted", permanent=True)
        try:
            data = base64.b64decode(payload, validate=True)
        except ValueError as exc:
            raise FetchError(f"bad base64 in data URI: {exc}", permanent=True) from exc
        if len(data) > self._max_bytes:
            raise FetchError(f"output is larger than {self._max_bytes} bytes", permanent=True)
        return data
