"""Reaching URLs from outside safely: http(s) only, no private addresses, bounded size.

A provider's result URL, a producer's source image and a producer's callback URL are data
from outside; fetching them blindly would let a forged result or a crafted job make the
worker read internal services (SSRF). Outside development editq refuses loopback,
private, link-local and reserved addresses, twice: :meth:`Fetcher.check_url` refuses such
a URL with a clear message (when a job is created, and before each download), and
:func:`outbound_client`'s transport connects only to an address it has just checked. The
second check is the one that holds: a DNS answer that changes between the two (DNS
rebinding) reaches nothing, because the connection goes to the address that was checked.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
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


class NonPublicAddress(httpcore.ConnectError):
    """The host resolves to a loopback, private or reserved address; nothing was sent."""


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, opened only to an address that was resolved and checked.

    The host is resolved here, once; the connection goes to the first public address of
    the answer, and TLS still verifies the certificate against the host's name (httpcore
    passes the origin's name for SNI, not the address).
    """

    def __init__(
        self, resolver: Resolver = _resolve, sockets: httpcore.NetworkBackend | None = None
    ) -> None:
        self._resolve = resolver
        self._sockets = sockets or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to ``host`` through the address it resolves to, if that is public."""
        try:
            addresses = self._resolve(host)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        public = [address for address in addresses if _is_public(address)]
        if not public or len(public) < len(addresses):
            refused = next(a for a in addresses if not _is_public(a)) if addresses else host
            raise NonPublicAddress(f"{host} resolves to a non-public address {refused}")
        return self._sockets.connect_tcp(
            public[0], port, timeout, local_address=local_address, socket_options=socket_options
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Never: an outside URL cannot name a local socket."""
        raise NonPublicAddress(f"unix socket {path} refused")

    def sleep(self, seconds: float) -> None:
        """Sleep as httpcore's own backend does."""
        self._sockets.sleep(seconds)


def outbound_client(
    *, timeout: float, allow_private: bool, resolver: Resolver = _resolve
) -> httpx.Client:
    """The client editq reaches outside URLs with: pinned to checked addresses, no redirects.

    With ``allow_private`` (development, the emulators) it is a plain client.
    """
    transport = httpx.HTTPTransport()
    if not allow_private:
        # httpx builds its pool without a way to pass a network backend in; the pool it
        # builds is replaced by one with the same defaults and the pinned backend.
        transport._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=PinnedBackend(resolver),
        )
    return httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)


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
