"""Serving the console on the API's app, when it is configured."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from worker.console.access import (
    HERE,
    MIN_SECRET,
    LoginRequired,
    Refused,
    refused,
    router,
    to_login,
)
from worker.console.operators import Operators
from worker.console.pages import router as pages_router
from worker.errors import SettingsInvalid
from worker.wiring import Container


def install(app: FastAPI, container: Container) -> None:
    """Serve the console on ``app`` when operators and a session secret are configured."""
    settings = container.settings
    operators = Operators(settings.console_operators)
    app.state.operators = operators
    secret = settings.console_secret.get_secret_value() if settings.console_secret else ""
    if not operators or not secret:
        app.include_router(_off)
        return
    if len(secret) < MIN_SECRET:
        raise SettingsInvalid(
            f"invalid setting EDITQ_CONSOLE_SECRET: use at least {MIN_SECRET} random characters"
        )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="editq_console",
        max_age=12 * 3600,
        same_site="lax",
        https_only=settings.env != "development",
        path="/console",
    )
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    app.include_router(pages_router)
    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(Refused, refused)


_off = APIRouter(include_in_schema=False)


@_off.get("/console", response_class=HTMLResponse)
def console_off() -> HTMLResponse:
    """The console is not configured: say how to turn it on."""
    return HTMLResponse(
        "<h1>The editq console is off</h1><p>Set EDITQ_CONSOLE_OPERATORS (see <code>editq"
        " console hash-password</code>) and EDITQ_CONSOLE_SECRET, then restart the API.</p>",
        status_code=404,
    )
