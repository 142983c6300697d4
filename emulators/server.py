"""Serving an ASGI app with uvicorn in a background thread, for tests, demos and benchmarks.

::

    with run_in_thread(create_app(config)) as server:
        httpx.get(f"{server.url}/_emulator/stats")
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


class ServerStartError(RuntimeError):
    """The server did not start accepting connections in time; see its log for the cause."""


class _QuickStopServer(uvicorn.Server):
    """A uvicorn server that notices a stop request within 10 ms instead of 100 ms.

    Test suites start and stop a server per test; uvicorn's 100 ms tick would add up.
    """

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            # on_tick refreshes the Date header every 10th tick; a faster tick is harmless.
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.01)


class RunningServer:
    """A uvicorn server running in a background thread; ``url`` is where it listens."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down (running its lifespan shutdown) and wait for it."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    startup_timeout: float = 10.0,
) -> RunningServer:
    """Start serving ``app`` on ``host``:``port`` and return once it accepts connections.

    Port 0 picks a free port; the returned ``url`` names the real one. Raises
    :class:`ServerStartError` if it is not accepting within ``startup_timeout`` seconds.
    """
    # Binding here, rather than letting uvicorn bind, is what tells us the port 0 turned into.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off only on sockets it recognises as
    # TCP, and with Nagle on every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        # Tests treat warnings as errors; the websocket stack is not needed and warns on import.
        ws="none",
        lifespan="on",
    )
    server = _QuickStopServer(config)

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    thread = threading.Thread(target=serve, name=f"uvicorn-{bound_port}", daemon=True)
    thread.start()
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    running = RunningServer(server, thread, f"http://{url_host}:{bound_port}")
    try:
        _wait_until_accepting(server, thread, host, bound_port, startup_timeout)
    except ServerStartError:
        running.stop()
        raise
    return running


def _wait_until_accepting(
    server: uvicorn.Server, thread: threading.Thread, host: str, port: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise ServerStartError(f"the server on port {port} exited during startup")
        if server.started:
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    return
            except OSError:
                pass
        time.sleep(0.01)
    raise ServerStartError(f"the server on port {port} did not start within {timeout} s")
