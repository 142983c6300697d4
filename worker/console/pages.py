"""The console's pages and actions, under ``/console``.

Pages read through the same use cases as the API and the CLI; every action writes the
same events as the CLI does, with ``console:<operator>`` as their actor. A session is a
signed cookie (HttpOnly, SameSite=Lax, Secure outside development) holding the operator's
name and a CSRF token that every form posts back.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from models.state import JobState
from worker.api.routes.jobs import decode_cursor, encode_cursor
from worker.console.operators import Operator, Operators
from worker.errors import EditqError, SettingsInvalid
from worker.usecases.console import overview
from worker.values.callback_events import CallbackFilter, CallbackState
from worker.values.records import JobFilter
from worker.wiring import Container

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)
PAGE_SIZE = 50
#: The shortest session key accepted: the cookies' signatures are only as strong as it.
MIN_SECRET = 32


class LoginRequired(Exception):
    """No operator is logged in: the page sends the browser to the login form."""


class Refused(Exception):
    """An action this session may not take (read-only, or no valid CSRF token): 403."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


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
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(Refused, _refused)


_off = APIRouter(include_in_schema=False)


@_off.get("/console", response_class=HTMLResponse)
def console_off() -> HTMLResponse:
    """The console is not configured: say how to turn it on."""
    return HTMLResponse(
        "<h1>The editq console is off</h1><p>Set EDITQ_CONSOLE_OPERATORS (see <code>editq"
        " console hash-password</code>) and EDITQ_CONSOLE_SECRET, then restart the API.</p>",
        status_code=404,
    )


async def _to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return _page(request, "message.html", {"title": "Not allowed", "message": exc.why}, 403)


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


async def posted(request: Request, operator: Operator, *, acting: bool = True) -> dict[str, str]:
    """The form, once its CSRF token is checked (and, for an action, the role)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    sent, kept = form.get("csrf_token", ""), request.session.get("csrf", "")
    if not kept or not hmac.compare_digest(sent.encode(), str(kept).encode()):
        raise Refused("This form was not sent from a console page (its CSRF token is missing).")
    if acting and not operator.may_act:
        raise Refused(f"{operator.name} is a read-only operator: ask an operator to do this.")
    return form


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    operators: Operators = request.app.state.operators
    name_in = request.session.get("operator")
    me = operators.get(name_in) if isinstance(name_in, str) else None
    base = {"me": me, "csrf": csrf_token(request), "path": request.url.path}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def _missing(request: Request, title: str, exc: EditqError, status: int = 404) -> HTMLResponse:
    return _page(request, "message.html", {"title": title, "message": exc.message}, status)


def _back(url: str, **query: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?{urlencode(query)}" if query else url, status_code=303)


# -- logging in -----------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", {"title": "Log in"})


@router.post("/login")
async def login(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    sent, kept = form.get("csrf_token", ""), request.session.get("csrf", "")
    if not kept or not hmac.compare_digest(sent.encode(), str(kept).encode()):
        raise Refused("This form was not sent from the console's login page.")
    operators: Operators = request.app.state.operators
    found = await run_in_threadpool(operators.check, form.get("name", ""), form.get("password", ""))
    if found is None:
        context = {"title": "Log in", "failed": True, "name": form.get("name", "")}
        return _page(request, "login.html", context, 401)
    request.session.clear()
    request.session.update(operator=found.name, csrf=secrets.token_urlsafe(32))
    return _back("/console")


@router.post("/logout")
async def logout(request: Request, me: Me) -> Response:
    await posted(request, me, acting=False)
    request.session.clear()
    return _back("/console/login")


# -- overview -------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview_page(request: Request, me: Me, container: Deps) -> HTMLResponse:
    seen = overview(container.database("console"), container.policy().limits)
    notice = request.query_params.get("notice")
    return _page(request, "overview.html", {"title": "Overview", "o": seen, "notice": notice})


@router.get("/live", response_class=HTMLResponse)
def overview_live(request: Request, me: Me, container: Deps) -> HTMLResponse:
    """The overview's live part alone, which the page fetches every few seconds."""
    seen = overview(container.database("console"), container.policy().limits)
    return _page(request, "_live.html", {"o": seen})


@router.post("/providers/{name}/{action}")
async def provider_action(
    request: Request, name: str, action: str, me: Me, container: Deps
) -> Response:
    form = await posted(request, me)
    controls = container.provider_controls(f"console:{me.name}")
    run: dict[str, Callable[[], object]] = {
        "pause": lambda: controls.pause(name, form.get("reason")),
        "resume": lambda: controls.resume(name),
        "capacity": lambda: controls.set_capacity(name, _capacity(form.get("capacity", ""))),
    }
    if action not in run:
        raise Refused(f"There is no provider action {action!r}.")
    try:
        await run_in_threadpool(run[action])
    except EditqError as exc:
        return _back("/console", notice=f"{exc.code}: {exc.message}")
    return _back("/console", notice=f"{name}: {action} done")


def _short(value: object) -> object:
    """A value as the job page shows it: a data URI or a long URL cut to its start."""
    if isinstance(value, str) and len(value) > 120:
        return f"{value[:100]}... ({len(value):,} characters)"
    return value


def _capacity(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return -1  # refused by the use case, naming the field and the rule


# -- jobs -----------------------------------------------------------------------------------


def _filter(params: dict[str, str]) -> JobFilter:
    metadata = {}
    for pair in params.get("metadata", "").split(","):
        key, sep, value = pair.strip().partition("=")
        if sep and key:
            metadata[key] = value
    state = params.get("state", "")
    return JobFilter(
        states=(JobState(state),) if state in {s.value for s in JobState} else (),
        batch_id=_uuid(params.get("batch", "")),
        provider=params.get("provider") or None,
        error_code=params.get("error_code") or None,
        since=_when(params.get("since", "")),
        until=_when(params.get("until", "")),
        external_id=params.get("external_id") or None,
        metadata=metadata,
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip()) if value.strip() else None
    except ValueError:
        return None


def _when(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


FILTERS = ("state", "provider", "error_code", "batch", "external_id", "metadata", "since", "until")


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    me: Me,
    container: Deps,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    q: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    found = _uuid(q or "")
    if found is not None:
        return RedirectResponse(f"/console/jobs/{found}", status_code=303)
    params = {k: request.query_params.get(k, "") for k in FILTERS}
    where = _filter(params)
    after = decode_cursor(cursor) if cursor else None
    page, following = container.jobs("console").list(where, PAGE_SIZE, after)
    kept = {k: v for k, v in params.items() if v}
    next_url = None
    if following is not None:
        next_url = "/console/jobs?" + urlencode({**kept, "cursor": encode_cursor(following)})
    context = {
        "title": "Jobs",
        "jobs": page,
        "params": params,
        "next_url": next_url,
        "states": [s.value for s in JobState],
        "providers": list(container.policy().limits.order),
        "notice": request.query_params.get("notice"),
        "filtered": bool(kept),
        "query": urlencode({**kept, **({"cursor": cursor} if cursor else {})}),
    }
    live = request.query_params.get("part") == "live"
    return _page(request, "_jobs_table.html" if live else "jobs.html", context)


@router.post("/jobs/bulk/{action}")
async def by_filter(request: Request, action: str, me: Me, container: Deps) -> Response:
    """Retry or cancel every job of the filter: a dry run first, then with a reason."""
    form = await posted(request, me)
    jobs = container.jobs(f"console:{me.name}")
    bulk = {"retry": jobs.retry_matching, "cancel": jobs.cancel_matching}.get(action)
    if bulk is None:
        raise Refused(f"There is no action {action!r} on many jobs.")
    reason = form.get("reason", "").strip()
    # Without a reason nothing changes: the page shows what would, and asks for one.
    dry_run = form.get("confirm") != "yes" or not reason
    where = _filter(form)
    try:
        report = await run_in_threadpool(
            lambda: bulk(where, reason or "(dry run)", dry_run=dry_run)
        )
    except EditqError as exc:
        return _missing(request, f"Not {action}ed", exc, 422)
    context = {
        "title": action.capitalize(),
        "action": action,
        "report": report,
        "form": form,
        "filters": FILTERS,
    }
    return _page(request, "bulk.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: uuid.UUID, me: Me, container: Deps) -> HTMLResponse:
    try:
        detail = container.jobs("console").get(job_id)
    except EditqError as exc:
        return _missing(request, "No such job", exc)
    storage = container.storage
    thumbnails = {o.key: storage.presign_get(o.key, 3600) for o in detail.outputs}
    shown_input = {k: _short(v) for k, v in detail.job.input.items()}
    context = {
        "title": f"Job {job_id}",
        "d": detail,
        "input": shown_input,
        "thumbnails": thumbnails,
        "notice": request.query_params.get("notice"),
    }
    return _page(request, "job.html", context)


@router.post("/jobs/{job_id}/{action}")
async def job_action(
    request: Request, job_id: uuid.UUID, action: str, me: Me, container: Deps
) -> Response:
    form = await posted(request, me)
    jobs = container.jobs(f"console:{me.name}")
    reason = form.get("reason", "").strip() or None
    actions: dict[str, Callable[[], object]] = {
        "retry": lambda: jobs.retry(job_id, reason),
        "cancel": lambda: jobs.cancel(job_id, reason),
    }
    if action not in actions:
        raise Refused(f"There is no job action {action!r}.")
    try:
        await run_in_threadpool(actions[action])
    except EditqError as exc:
        return _back(f"/console/jobs/{job_id}", notice=f"{exc.code}: {exc.message}")
    return _back(f"/console/jobs/{job_id}", notice=f"{action} done")


# -- batches --------------------------------------------------------------------------------


@router.get("/batches", response_class=HTMLResponse)
def batches_page(request: Request, me: Me, container: Deps) -> HTMLResponse:
    batches = container.batches("console")
    statuses = [batches.status(b.id) for b in batches.recent(50)]
    context = {
        "title": "Batches",
        "statuses": statuses,
        "notice": request.query_params.get("notice"),
    }
    return _page(request, "batches.html", context)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: uuid.UUID, me: Me, container: Deps) -> HTMLResponse:
    try:
        status = container.batches("console").status(batch_id)
    except EditqError as exc:
        return _page(
            request, "message.html", {"title": "No such batch", "message": exc.message}, 404
        )
    files = {
        name: container.storage.presign_get(key, 3600)
        for name, key in (
            ("results.jsonl", status.batch.results_key),
            ("errors.jsonl", status.batch.errors_key),
        )
        if key
    }
    context = {
        "title": f"Batch {batch_id}",
        "s": status,
        "files": files,
        "notice": request.query_params.get("notice"),
    }
    live = request.query_params.get("part") == "live"
    return _page(request, "_batch_live.html" if live else "batch.html", context)


@router.post("/batches/{batch_id}/cancel")
async def batch_cancel(request: Request, batch_id: uuid.UUID, me: Me, container: Deps) -> Response:
    form = await posted(request, me)
    batches = container.batches(f"console:{me.name}")
    reason = form.get("reason", "").strip() or None
    try:
        await run_in_threadpool(batches.cancel, batch_id, reason)
    except EditqError as exc:
        return _back(f"/console/batches/{batch_id}", notice=f"{exc.code}: {exc.message}")
    return _back(f"/console/batches/{batch_id}", notice="cancel requested")


# -- callbacks ------------------------------------------------------------------------------


@router.get("/callbacks", response_class=HTMLResponse)
def callbacks_page(request: Request, me: Me, container: Deps) -> HTMLResponse:
    wanted = request.query_params.get("state", "failed")
    states = tuple(s for s in CallbackState if s.value == wanted) or (CallbackState.FAILED,)
    shown = container.callbacks("console").list(CallbackFilter(states=states), limit=100)
    context = {
        "title": "Callbacks",
        "callbacks": shown,
        "state": states[0].value,
        "states": [s.value for s in CallbackState],
        "notice": request.query_params.get("notice"),
    }
    return _page(request, "callbacks.html", context)


@router.post("/callbacks/redeliver")
async def callbacks_redeliver(request: Request, me: Me, container: Deps) -> Response:
    form = await posted(request, me)
    ids = tuple(i for i in (_uuid(v) for v in form.get("ids", "").split(",")) if i is not None)
    if not ids:
        return _back("/console/callbacks", notice="choose the callbacks to send again")
    callbacks = container.callbacks(f"console:{me.name}")
    try:
        sent = await run_in_threadpool(callbacks.redeliver, CallbackFilter(ids=ids))
    except EditqError as exc:
        return _back("/console/callbacks", notice=f"{exc.code}: {exc.message}")
    return _back("/console/callbacks", notice=f"{sent} callback(s) due again", state="pending")
