"""What every emulator's ASGI app shares: its lifespan, its state and its admin routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, FastAPI


class Lifecycle(Protocol):
    """An emulator whose background machinery starts and stops with its app."""

    async def start(self) -> None:
        """Start the background machinery (runners, webhook senders, clients)."""
        ...

    async def stop(self) -> None:
        """Stop it, cancelling what is still running."""
        ...


def emulator_app(title: str, emulator: Lifecycle, admin: APIRouter) -> FastAPI:
    """An app that runs ``emulator`` for its lifetime and serves ``admin``; no docs pages.

    The provider's own routes are added by the caller.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await emulator.start()
        try:
            yield
        finally:
            await emulator.stop()

    app = FastAPI(title=title, lifespan=lifespan, openapi_url=None, docs_url=None)
    app.state.emulator = emulator
    app.include_router(admin)
    return app
