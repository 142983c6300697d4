"""What the commands share about their output: ``--json``, tables that never cut an id, the
choices their options offer, the names downloaded files get, and the views of a job.

Tables are for people; ``--json`` prints one document in the API's own shapes
(:mod:`worker.api.schemas`), so a script reads the same fields from ``editq`` and from
``/v1``.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from pydantic_core import to_json
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from models.state import TERMINAL_STATES, JobState
from worker.api.schemas.job_out import JobOut, RetryReportOut, callback_out, detail_out, job_out
from worker.cli.common import err, out
from worker.config import KNOWN_PROVIDERS
from worker.usecases.jobs import RetryReport
from worker.values import chain
from worker.values.callback_events import CallbackFilter
from worker.values.canonical import EditInput
from worker.values.quality_policy import ON_FAILURE
from worker.values.records import JobDetail, JobRecord
from worker.values.routing import ROUTINGS
from worker.wiring import Container

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (the API's shapes), not tables.")
]

# Enumerations where a Literal will not do: typer offers a Literal's choices for one value
# only (--provider repeats), and output_format's Literal has no name to annotate with. Both
# are built from the names editq already has, never listed again.
Provider = StrEnum(  # type: ignore[misc]  # members are KNOWN_PROVIDERS, unknown to mypy
    "Provider", [(p, p) for p in KNOWN_PROVIDERS]
)
OutputFormat = StrEnum(  # type: ignore[misc]  # members are EditInput's Literal, unknown to mypy
    "OutputFormat", [(f, f) for f in get_args(EditInput.model_fields["output_format"].annotation)]
)
OnFailureChoice = StrEnum(  # type: ignore[misc]  # members are ON_FAILURE, unknown to mypy
    "OnFailureChoice", [(name, name) for name in ON_FAILURE]
)
RoutingChoice = StrEnum(  # type: ignore[misc]  # members are ROUTINGS, unknown to mypy
    "RoutingChoice", [(name, name) for name in ROUTINGS]
)
DEFAULT_OUTPUT_FORMAT = OutputFormat(EditInput.model_fields["output_format"].default)

#: Wide enough to measure any cell at its natural width.
_UNBOUNDED = 1_000_000


def print_json(document: object) -> None:
    """Print ``document`` (pydantic models, dataclasses, and lists and dicts of them) as JSON."""
    typer.echo(to_json(document, indent=2).decode())


def whole(header: str) -> Column:
    """A column never cut or folded: ids, URLs, keys, codes and times, which users copy."""
    return Column(header, no_wrap=True)


def print_table(table: Table, console: Console = out) -> None:
    """Print ``table``, wider than the console when its :func:`whole` columns need it.

    rich fits a table to the console (80 columns when stdout is not a terminal) and, as a last
    resort, shrinks every column, which cuts an id to ``433c7433…``. A line longer than the
    terminal wraps on screen but still copies as one id, so the table keeps its width instead.
    """
    needed = _unbroken_width(console, table)
    if needed > console.width:
        console = Console(file=console.file, width=needed)
    console.print(table)


def _unbroken_width(console: Console, table: Table) -> int:
    """The width at which ``table``'s no-wrap columns are whole and the others keep words."""
    options = console.options.update_width(_UNBOUNDED)
    _, right, _, left = table.padding
    width = len(table.columns) + 1  # the edges and the rules between columns, at most
    for column in table.columns:
        sizes = [Measurement.get(console, options, c) for c in (column.header, *column.cells)]
        width += left + right + max(s.maximum if column.no_wrap else s.minimum for s in sizes)
    return width


def line(text: str) -> None:
    """Print a line of markup as it is: never folded, so an id or URL in it stays whole."""
    out.print(text, soft_wrap=True, highlight=False)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def output_names(result: dict[str, Any]) -> list[tuple[str, str]]:
    """File names (from the external id) and storage keys of one results.jsonl line.

    ``result`` has ``job_id``, ``external_id`` and ``outputs`` (each with its ``key``). An
    external id that is not a safe file name has its other characters replaced and a short
    hash of it appended, so that two ids never share a file.
    """
    external_id = str(result.get("external_id") or result["job_id"])
    stem = _UNSAFE.sub("_", external_id).lstrip(".") or "_"
    if stem != external_id:
        stem += "-" + hashlib.sha256(external_id.encode()).hexdigest()[:8]
    outputs = result.get("outputs") or []
    names = []
    for i, o in enumerate(outputs):
        suffix = Path(o["key"]).suffix
        names.append((f"{stem}{suffix}" if len(outputs) == 1 else f"{stem}-{i}{suffix}", o["key"]))
    return names


_COLOURS = {"succeeded": "green", "failed": "red", "canceled": "yellow"}


def state(value: JobState) -> str:
    """A job state as coloured markup."""
    colour = _COLOURS.get(value.value, "cyan")
    return f"[{colour}]{value.value}[/{colour}]"


def job_document(container: Container, detail: JobDetail) -> JobOut:
    """One job as ``GET /v1/jobs/{id}?events=true`` answers: attempts, outputs, history."""
    settings = container.settings
    document = detail_out(detail, container.storage, settings.presign_get_seconds, with_events=True)
    sent = container.callbacks("cli").list(CallbackFilter(job_id=detail.job.id), limit=100)
    document.callbacks = [callback_out(c) for c in reversed(sent)]
    return document


def print_jobs(jobs: list[JobRecord] | tuple[JobRecord, ...], title: str | None = None) -> None:
    """Jobs as a table, one a row, ids whole."""
    table = Table(
        whole("id"), "state", "step", "provider", "attempt", whole("error"), "cost",
        whole("external id"), whole("created"), title=title,
    )  # fmt: skip
    for job in jobs:
        table.add_row(
            str(job.id), state(job.state), f"{job.step}/{job.length}", job.provider or "",
            str(job.attempt),
            job.error_code or "", f"${job.cost_usd:.2f}", escape(job.external_id or ""),
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    print_table(table)


def print_job(container: Container, detail: JobDetail) -> None:
    """One job for people: its request, attempts, outputs (with URLs) and history."""
    job = detail.job
    line(f"[bold]{job.id}[/bold] {state(job.state)}  {job.model}  cost ${job.cost_usd:.2f}")
    if job.external_id:
        line(f"external id: {escape(job.external_id)}")
    line(f"prompt: {escape(str(job.input.get('prompt')))}")
    if job.error_code:
        at = f" (step {job.step})" if job.length > 1 else ""
        line(f"error{at}: [red]{job.error_code}[/red] {escape(job.error_message or '')}")
    if job.length > 1:
        _print_steps(detail)
    attempts = Table(
        "attempt", "provider", "outcome", whole("request id"), whole("error"), title="attempts"
    )
    for a in detail.attempts:
        attempts.add_row(
            str(a.number), a.provider, a.outcome, a.request_id or "", a.error_code or ""
        )
    print_table(attempts)
    if detail.outputs:
        line("outputs")
    seconds = container.settings.presign_get_seconds
    for o in detail.outputs:
        size = f"{o.width}x{o.height}" if o.width and o.height else "?"
        of = f"step {o.step} " if job.length > 1 else ""
        line(f"  {of}{o.index}  {o.key}  {o.content_type}  {size}  {o.bytes} bytes")
        line(f"     sha256 {o.sha256}")
        line(f"     url    {escape(container.storage.presign_get(o.key, seconds))}")
        if o.quality is not None:
            line(f"     quality {quality_summary(o.quality)}")
    for a in detail.attempts:
        for report in a.quality or []:
            if report.get("failed") and a.outcome == "failed":
                line(f"  rejected (attempt {a.number}): {escape(str(report.get('key')))}")
                line(f"     quality {quality_summary(report)}")
    events = Table("at", "transition", "state", "attempt", "actor", "reason", title="history")
    for e in detail.events:
        events.add_row(
            e.at.strftime("%H:%M:%S.%f")[:-3],
            e.transition,
            e.state.value,
            str(e.attempt),
            e.actor or "",
            escape(e.reason or ""),
        )
    print_table(events)
    sys.stdout.flush()


def _print_steps(detail: JobDetail) -> None:
    """A chain's steps: what each asks, where it is, where it ran, what it cost."""
    job = detail.job
    table = Table("step", whole("prompt"), "state", "provider", "attempts", "cost", title="steps")
    for step in range(1, job.length + 1):
        tried = [a for a in detail.attempts if a.step == step]
        shown = "succeeded" if step < job.step else "pending" if step > job.step else job.state
        table.add_row(
            str(step),
            escape(chain.prompt_of(job, step)),
            state(JobState(shown)) if shown != "pending" else "pending",
            tried[-1].provider if tried else "",
            str(len(tried)),
            f"${sum(a.cost_usd or 0 for a in tried):.2f}",
        )
    print_table(table)


def quality_summary(report: dict[str, Any]) -> str:
    """One line of a quality report: the verdict, the flags, the scores that matter most."""
    verdict = "passed" if report.get("passed") else f"[red]failed {report.get('failed')}[/red]"
    scores = report.get("scores") or {}
    shown = [
        f"{name} {scores[name]}"
        for name in ("distance", "color_difference", "stddev")
        if name in scores
    ]
    flags = report.get("flags") or []
    flagged = f"  flags: {', '.join(flags)}" if flags else ""
    return f"{verdict}  {'  '.join(shown)}{flagged}"


def follow(container: Container, job_id: uuid.UUID, timeout: float) -> JobDetail:
    """Wait for a job to finish, showing its state on stderr; exit 1 after ``timeout`` s."""
    jobs = container.jobs("cli")
    deadline = time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    shown = 0  # the steps whose outputs were printed
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("queued", total=None)
        while True:
            detail = jobs.get(job_id)
            job = detail.job
            done = job.step if job.state is JobState.SUCCEEDED else job.step - 1
            for step in range(shown + 1, done + 1):
                if job.length > 1:
                    _print_step_done(progress, detail, step)
            shown = max(shown, done)
            at = f"step {job.step}/{job.length} " if job.length > 1 else ""
            progress.update(task, description=f"{at}{job.state} (attempt {job.attempt})")
            if job.state in TERMINAL_STATES:
                return detail
            if time.monotonic() > deadline:
                err.print(f"[yellow]still {detail.job.state} after {timeout:.0f} s[/yellow]")
                raise typer.Exit(1)
            time.sleep(0.5)


def _print_step_done(progress: Progress, detail: JobDetail, step: int) -> None:
    """One line on stderr as a chain's step is stored, naming its outputs."""
    job = detail.job
    keys = ", ".join(o.key for o in detail.outputs if o.step == step)
    progress.console.print(
        f"step {step}/{job.length} [green]succeeded[/green]: "
        f"{escape(chain.prompt_of(job, step))} -> {escape(keys)}",
        soft_wrap=True,
    )


def print_moved(job: JobRecord, as_json: bool) -> None:
    """A job just retried or canceled: its id and new state, or the job as JSON."""
    if as_json:
        print_json(job_out(job))
    else:
        line(f"{job.id} {state(job.state)}")


def print_retry_report(report: RetryReport, as_json: bool) -> None:
    """What a retry by filter matched and did, with its sample of jobs (the API's shape)."""
    if as_json:
        sample = [job_out(j) for j in report.sample]
        counts = {"matched": report.matched, "retried": report.retried}
        print_json(RetryReportOut(**counts, dry_run=report.dry_run, sample=sample))
        return
    verb = "would retry" if report.dry_run else "retried"
    count = report.matched if report.dry_run else report.retried
    out.print(f"{verb} {count} job(s)")
    print_jobs(report.sample, title="sample")
