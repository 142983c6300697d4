"""Who may use the console: operators' sessions, roles and CSRF tokens, and logging in.

A session is a signed cookie (HttpOnly, SameSite=Lax, Secure outside development) holding
the operator's name and a CSRF token that every form posts back. A page without a session
sends the browser to the login form; an action without the form's token, or by a
read-only operator, is answered 403 and changes nothing.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from worker.console.operators import Operator, Operators
from worker.errors import EditqError
from worker.wiring import Container

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)
#: The shortest session key accepted: the cookies' signatures are only as strong as it.
MIN_SECRET = 32


class LoginRequired(Exception):
    """No operator is logged in: the page sends the browser to the login form."""


class Refused(Exception):
    """An action this session may not take (read-only, or no valid CSRF token): 403."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=303)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return render(request, "message.html", {"title": "Not allowed", "message": exc.why}, 403)


# -- who is asking ------------------------------------------------------------------------


def deps(request: Request) -> Container:
    built: Container = request.app.state.container
    return built


def current(request: Request) -> Operator:
    """The logged-in operator, as configured now."""
    name = request.session.get("operator")
    operators: Operators = request.app.state.operators
    found = operators.get(name) if isinstance(name, str) else None
    if found is None:
        raise LoginRequired
    return found


Me = Annotated[Operator, Depends(current)]
Deps = Annotated[Container, Depends(deps)]


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def _form(request: Request, refusal: str) -> dict[str, str]:
    """The posted form, once it carries this session's CSRF token; else :class:`Refused`."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    sent, kept = form.get("csrf_token", ""), request.session.get("csrf", "")
    if not kept or not hmac.compare_digest(sent.encode(), str(kept).encode()):
        raise Refused(refusal)
    return form


async def posted(request: Request, operator: Operator, *, acting: bool = True) -> dict[str, str]:
    """The form, once its CSRF token is checked (and, for an action, the role)."""
    form = await _form(
        request, "This form was not sent from a console page: its CSRF token is missing or stale."
    )
    if acting and not operator.may_act:
        raise Refused(f"{operator.name} is a read-only operator: ask an operator to do this.")
    return form


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    operators: Operators = request.app.state.operators
    name_in = request.session.get("operator")
    me = operators.get(name_in) if isinstance(name_in, str) else None
    base = {"me": me, "csrf": csrf_token(request), "path": request.url.path}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def missing(request: Request, title: str, exc: EditqError, status: int = 404) -> HTMLResponse:
    return render(request, "message.html", {"title": title, "message": exc.message}, status)


def back(url: str, **query: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?{urlencode(query)}" if query else url, status_code=303)


# -- logging in -----------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", {"title": "Log in"})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request, "This form was not sent from the console's login page.")
    operators: Operators = request.app.state.operators
    found = await run_in_threadpool(operators.check, form.get("name", ""), form.get("password", ""))
    if found is None:
        context = {"title": "Log in", "failed": True, "name": form.get("name", "")}
        return render(request, "login.html", context, 401)
    request.session.clear()
    request.session.update(operator=found.name, csrf=secrets.token_urlsafe(32))
    return back("/console")


@router.post("/logout")
async def logout(request: Request, me: Me) -> Response:
    await posted(request, me, acting=False)
    request.session.clear()
    return back("/console/login")
