"""Request-scoped access to the process's container and the producer key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


#: The producer key scheme, declared so the OpenAPI document (and /docs) offers to send it.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="producerKey",
    description="A producer key from EDITQ_API_KEYS, as `Authorization: Bearer <key>`.",
)


def require_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> None:
    """Reject the request unless it carries a producer key."""
    keys: KeyRing = request.app.state.keys
    if credentials is None or not keys.accepts(f"Bearer {credentials.credentials}"):
        raise Unauthorized


Authorized = Depends(require_key)
