"""What the emulator tests share: a scripted webhook receiver and a pool of test servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from emulators.server import RunningServer, run_in_thread


class Receiver:
    """A webhook endpoint that records each call and answers from a script of status codes."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self._statuses = list(statuses)
        self.app = FastAPI()
        self.app.post("/hook")(self._hook)

    async def _hook(self, request: Request) -> Response:
        self.calls.append((dict(request.headers), await request.body()))
        return Response(status_code=self._statuses.pop(0) if self._statuses else 200)


@contextmanager
def server_pool(
    emulator: Callable[..., FastAPI],
) -> Iterator[Callable[..., RunningServer]]:
    """A ``start(app=None, **options)`` that serves ``app`` or ``emulator(**options)``.

    Every server started is stopped when the block ends.
    """
    servers: list[RunningServer] = []

    def start(app: FastAPI | None = None, **options: Any) -> RunningServer:
        server = run_in_thread(app or emulator(**options))
        servers.append(server)
        return server

    try:
        yield start
    finally:
        # A zero timeout only signals; signalling all first lets them shut down side by side.
        for server in servers:
            server.stop(timeout=0)
        for server in servers:
            server.stop()
