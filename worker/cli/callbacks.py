"""``editq callbacks ...``: see and resend the events sent to producers' ``callback_url``.

Like ``editq jobs``, these talk to PostgreSQL directly through the same use cases the
workers call; a redelivered callback is sent by the next scheduler tick.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from worker.api.schemas.job_out import CallbackOut, callback_out
from worker.cli.common import build_container, err, out
from worker.cli.output import JsonOption, line, print_json, print_table, whole
from worker.usecases.callbacks import Callbacks
from worker.values.callback_events import (
    CallbackDetail,
    CallbackFilter,
    CallbackRecord,
    CallbackState,
    new_secret,
)

callbacks_app = typer.Typer(
    help="Producer callbacks: list, inspect and redeliver them.", no_args_is_help=True
)

_COLOURS = {"delivered": "green", "failed": "red", "pending": "cyan"}


def _callbacks() -> Callbacks:
    return build_container().callbacks("cli")


def _state(state: CallbackState) -> str:
    colour = _COLOURS[state.value]
    return f"[{colour}]{state.value}[/{colour}]"


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def _to(url: str) -> str:
    # The URL's query may hold the producer's own token: show where it goes, not the whole.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class CallbackListed(CallbackOut):
    """A callback as the API shows it in a job, with what it is about and where it goes."""

    job_id: str | None
    batch_id: str | None
    #: The callback URL without its query, which may hold the producer's token.
    to: str


class TryOut(BaseModel):
    """One try to deliver a callback."""

    at: datetime
    status: int | None
    duration_ms: int
    error: str | None


class CallbackShown(CallbackListed):
    """One callback with the body it sends and every try to deliver it."""

    payload: dict[str, Any]
    tries: list[TryOut]


def _listed(c: CallbackRecord) -> CallbackListed:
    return CallbackListed(
        **callback_out(c).model_dump(),
        job_id=str(c.job_id) if c.job_id else None,
        batch_id=str(c.batch_id) if c.batch_id else None,
        to=_to(c.url),
    )


def _shown(detail: CallbackDetail) -> CallbackShown:
    c = detail.callback
    tries = [TryOut.model_validate(t, from_attributes=True) for t in detail.tries]
    return CallbackShown(**_listed(c).model_dump(), payload=c.payload, tries=tries)


@callbacks_app.command("list")
def list_callbacks(
    job: Annotated[uuid.UUID | None, typer.Option(help="Only this job's callbacks.")] = None,
    batch: Annotated[uuid.UUID | None, typer.Option(help="Only this batch's callbacks.")] = None,
    state: Annotated[
        list[CallbackState] | None, typer.Option(help="Only in this state (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent callbacks, newest first."""
    where = CallbackFilter(job_id=job, batch_id=batch, states=tuple(state or ()))
    found = _callbacks().list(where, limit)
    if as_json:
        print_json({"callbacks": [_listed(c) for c in found]})
        return
    table = Table(
        whole("id"), "event", whole("host"), "state", "attempts", "last status", whole("created")
    )
    for c in found:
        table.add_row(
            str(c.id),
            c.event,
            urlsplit(c.url).hostname or "",
            _state(c.state),
            str(c.attempts),
            "" if c.last_status is None else str(c.last_status),
            _when(c.created_at),
        )
    print_table(table)


@callbacks_app.command("show")
def show(
    callback_id: Annotated[uuid.UUID, typer.Argument(help="The callback's id.")],
    as_json: JsonOption = False,
) -> None:
    """One callback: where it goes, what it says, and every try to deliver it."""
    detail = _callbacks().get(callback_id)
    if as_json:
        print_json(_shown(detail))
        return
    c: CallbackRecord = detail.callback
    line(f"[bold]{c.id}[/bold] {c.event} {_state(c.state)}  webhook-id {c.webhook_id}")
    line(f"to: {escape(_to(c.url))}")
    line(f"about: {'job ' + str(c.job_id) if c.job_id else 'batch ' + str(c.batch_id)}")
    line(f"created {_when(c.created_at)}; tries this round {c.attempts}")
    if c.state is CallbackState.PENDING:
        line(f"next try at {_when(c.next_attempt_at)}")
    if c.delivered_at:
        line(f"delivered at {_when(c.delivered_at)}")
    out.print_json(data=c.payload)
    tries = Table("at", "status", "ms", "error", title="tries")
    for t in detail.tries:
        tries.add_row(
            t.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            "" if t.status is None else str(t.status),
            str(t.duration_ms),
            t.error or "",
        )
    print_table(tries)


@callbacks_app.command("redeliver")
def redeliver(
    callback_ids: Annotated[
        list[uuid.UUID] | None, typer.Argument(help="Callbacks to send again (or use filters).")
    ] = None,
    job: Annotated[uuid.UUID | None, typer.Option(help="Every callback of this job.")] = None,
    batch: Annotated[uuid.UUID | None, typer.Option(help="Every callback of this batch.")] = None,
    state: Annotated[
        list[CallbackState] | None, typer.Option(help="Only in this state (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send callbacks again, with a fresh budget of tries and the same webhook-id."""
    where = CallbackFilter(
        ids=tuple(callback_ids or ()), job_id=job, batch_id=batch, states=tuple(state or ())
    )
    if where.is_empty():
        err.print(
            "[red]invalid filter[/red]: give callback ids, or at least one of --job, "
            "--batch, --state"
        )
        raise typer.Exit(2)
    count = _callbacks().redeliver(where)
    if as_json:
        print_json({"redelivering": count})
    else:
        out.print(f"redelivering {count} callback(s); the scheduler sends them at its next tick")


@callbacks_app.command("new-secret")
def secret() -> None:
    """Print a fresh secret for EDITQ_CALLBACK_SECRET (whsec_ and 32 random bytes)."""
    typer.echo(new_secret())
