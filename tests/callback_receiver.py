"""A producer's callback endpoint for tests: verifies every request with ``standardwebhooks``.

It answers from a script of status codes (then 200), and records each request with the
outcome of ``Webhook(secret).verify``, so a test can assert both what was sent and that
every signature held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError

from emulators.server import run_in_thread


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and what verifying its signature gave."""

    headers: dict[str, str]
    body: bytes
    #: The verified JSON body; None when the signature did not verify.
    payload: dict[str, Any] | None
    error: str | None
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class CallbackReceiver:
    """A signed-webhook endpoint at ``url`` (``/hook``) answering ``statuses`` in turn."""

    def __init__(self, secret: str, statuses: tuple[int, ...] = ()) -> None:
        self._verifier = Webhook(secret)
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.url = ""
        self.app = FastAPI()
        self.app.post("/hook")(self._hook)

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        try:
            payload, error = self._verifier.verify(body, headers), None
        except WebhookVerificationError as exc:
            payload, error = None, str(exc)
        with self._lock:
            status = self._statuses.pop(0) if self._statuses else 200
            self.received.append(Received(headers, body, payload, error, status))
        return Response(status_code=status)

    def calls(self) -> list[Received]:
        """Every request so far."""
        with self._lock:
            return list(self.received)

    def assert_all_verified(self) -> list[dict[str, Any]]:
        """Every request's verified body; fails on any whose signature did not verify."""
        calls = self.calls()
        unverified = [(c.headers, c.error) for c in calls if c.payload is None]
        assert not unverified, f"signatures that did not verify: {unverified}"
        return [c.payload for c in calls if c.payload is not None]


@contextmanager
def receiving(secret: str, statuses: tuple[int, ...] = ()) -> Iterator[CallbackReceiver]:
    """A :class:`CallbackReceiver` served over real HTTP for the length of the block."""
    receiver = CallbackReceiver(secret, statuses)
    with run_in_thread(receiver.app) as server:
        receiver.url = f"{server.url}/hook"
        yield receiver
