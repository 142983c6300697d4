"""The HTTP client an emulator reaches out with: source downloads and webhooks.

An emulator at high concurrency may have a thousand of these calls wanting to go at once.
httpcore's connection pool rescans every waiting request against every connection each
time a request starts or a response closes, so a long queue inside the pool costs more CPU
than the calls themselves. The transport here lets only as many requests into the pool as
it has connections; the rest wait on a semaphore, which costs nothing.

The pool is kept small for the same reason: each time a request is placed, httpcore asks
every idle connection whether its socket has expired, one system call each. The calls are
local and short (a source download, a webhook), so a few connections keep up with
hundreds of requests a second; with 64 this check was a fifth of a busy emulator's CPU, and
side by side in the overhead benchmark 16 connections halved the emulator's CPU a job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import httpx

#: Connections (and so requests in the pool) at once; beyond it requests wait their turn.
CONNECTIONS = 16

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def outbound_client(
    limit: int = CONNECTIONS,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    rewrite_hosts: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``AsyncClient`` that keeps at most ``limit`` requests inside its pool.

    ``wrap`` lets a caller put its own transport (a recorder, say) around the bounded one;
    ``rewrite_hosts`` sends requests for one ``host:port`` to another (see
    :class:`emulators.faults.FaultConfig`). Create it from the event loop that will use it.
    """
    transport: httpx.AsyncBaseTransport = BoundedTransport(limit)
    if rewrite_hosts:
        transport = RewriteHosts(transport, rewrite_hosts)
    if wrap is not None:
        transport = wrap(transport)
    return httpx.AsyncClient(transport=transport, timeout=TIMEOUT)


class RewriteHosts(httpx.AsyncBaseTransport):
    """Connects to another ``host:port`` than the URL names, keeping the ``Host`` header."""

    def __init__(self, inner: httpx.AsyncBaseTransport, targets: Mapping[str, str]) -> None:
        self._inner = inner
        self._targets = dict(targets)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        authority = f"{request.url.host}:{request.url.port or _DEFAULT_PORTS[request.url.scheme]}"
        target = self._targets.get(authority)
        if target is not None:
            host, _, port = target.rpartition(":")
            request.url = request.url.copy_with(host=host, port=int(port))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


_DEFAULT_PORTS = {"http": 80, "https": 443}


class BoundedTransport(httpx.AsyncBaseTransport):
    """Admits ``limit`` requests at a time to ``inner`` (an ``AsyncHTTPTransport``).

    A request holds its slot until its response is closed, because the connection is busy
    until then.
    """

    def __init__(self, limit: int, inner: httpx.AsyncBaseTransport | None = None) -> None:
        if inner is None:
            limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
            inner = httpx.AsyncHTTPTransport(limits=limits)
        self._inner = inner
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._slots.acquire()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _SlotHeld(response.stream, self._slots.release)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _SlotHeld(httpx.AsyncByteStream):
    """A response body that gives its request's slot back once, when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None
