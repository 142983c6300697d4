"""Request-scoped access to the process's container and the producer key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from worker.api.auth import KeyRing
from worker.errors import Unauthorized
from worker.usecases.jobs import Jobs
from worker.wiring import Container


def container(request: Request) -> Container:
    """The container the app was built with."""
    built: Container = request.app.state.container
    return built


def jobs(request: Request) -> Jobs:
    """Producer and ops use cases, acting as ``api``."""
    return container(request).jobs("api")


def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Reject the request unless it carries a producer key."""
    keys: KeyRing = request.app.state.keys
    if not keys.accepts(authorization):
        raise Unauthorized


Authorized = Depends(require_key)
