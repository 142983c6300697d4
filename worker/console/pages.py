"""The console's pages and actions, under ``/console``: overview, jobs, batches, callbacks.

Pages read through the same use cases as the API and the CLI; every action writes the
same events as the CLI does, with ``console:<operator>`` as their actor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from models.state import JobState
from worker.api.routes.jobs import decode_cursor, encode_cursor
from worker.console.access import Deps, Me, Refused, back, missing, posted, render
from worker.errors import EditqError
from worker.usecases.console import overview
from worker.values.callback_events import CallbackFilter, CallbackState
from worker.values.records import JobFilter

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE_SIZE = 50


# -- overview -------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview_page(request: Request, me: Me, container: Deps) -> HTMLResponse:
    seen = overview(container.database("console"), container.policy().limits)
    notice = request.query_params.get("notice")
    return render(request, "overview.html", {"title": "Overview", "o": seen, "notice": notice})


@router.get("/live", response_class=HTMLResponse)
def overview_live(request: Request, me: Me, container: Deps) -> HTMLResponse:
    """The overview's live part alone, which the page fetches every few seconds."""
    seen = overview(container.database("console"), container.policy().limits)
    return render(request, "_live.html", {"o": seen})


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
        return back("/console", notice=f"{exc.code}: {exc.message}")
    return back("/console", notice=f"{name}: {action} done")


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


class FilterInvalid(Exception):
    """A filter field the console cannot read: nothing is listed or acted on."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.message = f"{field}: {rule}"


def _filter(params: dict[str, str]) -> JobFilter:
    """The job filter of a form or query; :class:`FilterInvalid` names a field it cannot
    read, so an action never widens to more jobs than the operator asked for."""
    metadata = {}
    for pair in filter(None, (p.strip() for p in params.get("metadata", "").split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FilterInvalid("metadata", f"{pair!r} is not key=value")
        metadata[key.strip()] = value.strip()
    state = params.get("state", "")
    if state and state not in {s.value for s in JobState}:
        raise FilterInvalid("state", f"{state!r} is not a job state")
    return JobFilter(
        states=(JobState(state),) if state else (),
        batch_id=_uuid("batch", params.get("batch", "")),
        provider=params.get("provider") or None,
        error_code=params.get("error_code") or None,
        since=_when("since", params.get("since", "")),
        until=_when("until", params.get("until", "")),
        external_id=params.get("external_id") or None,
        metadata=metadata,
    )


def _uuid(field: str, value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip()) if value.strip() else None
    except ValueError:
        raise FilterInvalid(field, f"{value!r} is not an id") from None


def _when(field: str, value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.strip()) if value.strip() else None
    except ValueError:
        raise FilterInvalid(field, f"{value!r} is not a time like 2026-12-03T02:00") from None


#: What each action on many jobs did, in words.
_DONE = {"retry": "retried", "cancel": "canceled"}
FILTERS = ("state", "provider", "error_code", "batch", "external_id", "metadata", "since", "until")


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    me: Me,
    container: Deps,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    q: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    try:
        found = _uuid("job id", q or "")
        params = {k: request.query_params.get(k, "") for k in FILTERS}
        where = _filter(params)
    except FilterInvalid as exc:
        return render(request, "message.html", {"title": "Jobs", "message": exc.message}, 422)
    if found is not None:
        return RedirectResponse(f"/console/jobs/{found}", status_code=303)
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
    return render(request, "_jobs_table.html" if live else "jobs.html", context)


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
    try:
        where = _filter(form)
    except FilterInvalid as exc:
        message = f"Nothing was {_DONE[action]}: {exc.message}"
        return render(request, "message.html", {"title": "Jobs", "message": message}, 422)
    try:
        report = await run_in_threadpool(
            lambda: bulk(where, reason or "(dry run)", dry_run=dry_run)
        )
    except EditqError as exc:
        return missing(request, f"Not {_DONE[action]}", exc, 422)
    context = {
        "title": action.capitalize(),
        "action": action,
        "report": report,
        "form": form,
        "filters": FILTERS,
    }
    return render(request, "bulk.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: uuid.UUID, me: Me, container: Deps) -> HTMLResponse:
    try:
        detail = container.jobs("console").get(job_id)
    except EditqError as exc:
        return missing(request, "No such job", exc)
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
    return render(request, "job.html", context)


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
        return back(f"/console/jobs/{job_id}", notice=f"{exc.code}: {exc.message}")
    return back(f"/console/jobs/{job_id}", notice=f"{action} done")


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
    return render(request, "batches.html", context)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: uuid.UUID, me: Me, container: Deps) -> HTMLResponse:
    try:
        status = container.batches("console").status(batch_id)
    except EditqError as exc:
        return render(
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
    return render(request, "_batch_live.html" if live else "batch.html", context)


@router.post("/batches/{batch_id}/cancel")
async def batch_cancel(request: Request, batch_id: uuid.UUID, me: Me, container: Deps) -> Response:
    form = await posted(request, me)
    batches = container.batches(f"console:{me.name}")
    reason = form.get("reason", "").strip() or None
    try:
        await run_in_threadpool(batches.cancel, batch_id, reason)
    except EditqError as exc:
        return back(f"/console/batches/{batch_id}", notice=f"{exc.code}: {exc.message}")
    return back(f"/console/batches/{batch_id}", notice="cancel requested")


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
    return render(request, "callbacks.html", context)


@router.post("/callbacks/redeliver")
async def callbacks_redeliver(request: Request, me: Me, container: Deps) -> Response:
    form = await posted(request, me)
    try:
        ids = tuple(filter(None, (_uuid("ids", v) for v in form.get("ids", "").split(","))))
    except FilterInvalid as exc:
        return back("/console/callbacks", notice=exc.message)
    if not ids:
        return back("/console/callbacks", notice="choose the callbacks to send again")
    callbacks = container.callbacks(f"console:{me.name}")
    try:
        sent = await run_in_threadpool(callbacks.redeliver, CallbackFilter(ids=ids))
    except EditqError as exc:
        return back("/console/callbacks", notice=f"{exc.code}: {exc.message}")
    return back("/console/callbacks", notice=f"{sent} callback(s) due again", state="pending")
