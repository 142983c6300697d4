"""``editq submit`` and ``editq jobs ...``: producers and ops at the command line.

Commands talk to PostgreSQL and S3 directly through the same use cases the API calls, so
ops need no API key and no running API.
"""

from __future__ import annotations

import mimetypes
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from models.state import TERMINAL_STATES, JobState
from worker.cli.common import build_container, err, out
from worker.usecases.jobs import JobRequest, RetryReport
from worker.values.canonical import EditInput, ModelName
from worker.values.records import JobDetail, JobFilter, JobRecord
from worker.wiring import Container

jobs_app = typer.Typer(help="List, inspect, retry and cancel jobs.", no_args_is_help=True)

#: How long an uploaded source image stays readable by providers.
SOURCE_URL_SECONDS = 24 * 3600
#: Stands in for a local file while the other options are validated, so a bad option is
#: reported before anything is uploaded.
_UPLOAD_PENDING = "https://upload.pending/"


def _bad_input(exc: ValidationError) -> typer.Exit:
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"]) or "input"
        err.print(f"[red]invalid {field}[/red]: {e['msg']} ({e['type']})")
    return typer.Exit(2)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "data:"))


def _source_url(container: Container, source: str) -> str:
    if _is_url(source):
        return source
    path = Path(source)
    if not path.is_file():
        err.print(f"[red]invalid source[/red]: {source} is neither a URL nor a readable file")
        raise typer.Exit(2)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    key = f"inputs/{uuid.uuid4()}{path.suffix.lower()}"
    container.storage.put(key, path.read_bytes(), content_type)
    return container.storage.presign_get(key, SOURCE_URL_SECONDS)


def submit(
    source: Annotated[str, typer.Argument(help="Source image: a local file (uploaded) or a URL.")],
    prompt: Annotated[str, typer.Argument(help="The edit instruction.")],
    model: Annotated[
        str, typer.Option(help="flux-kontext-pro or flux-kontext-max.")
    ] = "flux-kontext-pro",
    aspect_ratio: Annotated[
        str | None, typer.Option(help="e.g. 1:1, 16:9; default follows the input.")
    ] = None,
    num_images: Annotated[int, typer.Option(help="Outputs, 1 to 4.")] = 1,
    seed: Annotated[int | None, typer.Option()] = None,
    output_format: Annotated[str, typer.Option(help="jpeg or png.")] = "jpeg",
    provider: Annotated[
        list[str] | None, typer.Option(help="Provider order; repeat for several.")
    ] = None,
    priority: Annotated[int, typer.Option(help="-100 to 100; higher runs first.")] = 0,
    external_id: Annotated[str | None, typer.Option(help="Your own id for this job.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job finishes.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 600,
) -> None:
    """Submit one edit job; prints its id (and, with --wait, its outcome)."""
    container = build_container()
    try:
        edit = EditInput.model_validate(
            {
                "prompt": prompt,
                "image_url": source if _is_url(source) else _UPLOAD_PENDING,
                "aspect_ratio": aspect_ratio,
                "num_images": num_images,
                "seed": seed,
                "output_format": output_format,
            }
        )
        request = JobRequest(
            model=model_name(model),
            input=edit.model_copy(update={"image_url": _source_url(container, source)}),
            providers=tuple(provider or ()),
            external_id=external_id,
            priority=priority,
        )
    except ValidationError as exc:
        raise _bad_input(exc) from exc
    job, _ = container.jobs("cli").create(request)
    typer.echo(str(job.id))
    if wait:
        detail = _wait(container, job.id, timeout)
        _show(container, detail)
        raise typer.Exit(0 if detail.job.state is JobState.SUCCEEDED else 1)


def model_name(name: str) -> ModelName:
    """``name`` as a canonical model, or exit 2 naming the choices."""
    if name not in ("flux-kontext-pro", "flux-kontext-max"):
        err.print(
            f"[red]invalid model[/red]: {name!r}; choose flux-kontext-pro or flux-kontext-max"
        )
        raise typer.Exit(2)
    return name  # type: ignore[return-value]  # narrowed by the check above


def _wait(container: Container, job_id: uuid.UUID, timeout: float) -> JobDetail:
    jobs = container.jobs("cli")
    deadline = time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("queued", total=None)
        while True:
            detail = jobs.get(job_id)
            progress.update(task, description=f"{detail.job.state} (attempt {detail.job.attempt})")
            if detail.job.state in TERMINAL_STATES:
                return detail
            if time.monotonic() > deadline:
                err.print(f"[yellow]still {detail.job.state} after {timeout:.0f} s[/yellow]")
                raise typer.Exit(1)
            time.sleep(0.5)


@jobs_app.command("list")
def list_jobs(
    state: Annotated[
        list[JobState] | None, typer.Option(help="Only jobs in this state (repeatable).")
    ] = None,
    batch: Annotated[uuid.UUID | None, typer.Option(help="Only jobs of this batch.")] = None,
    provider: Annotated[str | None, typer.Option()] = None,
    error_code: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """Recent jobs as a table, newest first."""
    where = JobFilter(
        states=tuple(state or ()), batch_id=batch, provider=provider, error_code=error_code
    )
    page, _ = build_container().jobs("cli").list(where, limit)
    table = Table("id", "state", "provider", "attempt", "error", "cost", "created")
    for job in page:
        table.add_row(
            str(job.id),
            _state(job.state),
            job.provider or "",
            str(job.attempt),
            job.error_code or "",
            f"${job.cost_usd:.2f}",
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@jobs_app.command("show")
def show(job_id: Annotated[uuid.UUID, typer.Argument(help="The job's id.")]) -> None:
    """One job: its request, attempts, outputs and history."""
    container = build_container()
    _show(container, container.jobs("cli").get(job_id))


@jobs_app.command("retry")
def retry(
    job_id: Annotated[
        uuid.UUID | None, typer.Argument(help="A failed or canceled job (or use filters).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why; kept in each job's history.")] = None,
    state: Annotated[
        list[str] | None, typer.Option(help="failed or canceled (repeatable; default both).")
    ] = None,
    batch: Annotated[uuid.UUID | None, typer.Option(help="Only jobs of this batch.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only jobs last on this provider.")] = None,
    error_code: Annotated[str | None, typer.Option(help="Only jobs that failed so.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only jobs created at or after.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only jobs created before.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and show; change nothing.")
    ] = False,
) -> None:
    """Send one failed or canceled job round again, or every job matching the filters."""
    jobs = build_container().jobs("cli")
    if job_id is not None:
        job = jobs.retry(job_id, reason)
        out.print(f"{job.id} {_state(job.state)}")
        return
    if not any((state, batch, provider, error_code, since, until)):
        err.print(
            "[red]invalid filter[/red]: give a job id, or at least one of --state, --batch, "
            "--provider, --error-code, --since, --until"
        )
        raise typer.Exit(2)
    bad = sorted(set(state or ()) - {"failed", "canceled"})
    if bad:
        err.print(f"[red]invalid state[/red]: {bad[0]!r}; only failed or canceled jobs are retried")
        raise typer.Exit(2)
    if not dry_run and not reason:
        err.print("[red]invalid reason[/red]: a retry by filter needs --reason (or --dry-run)")
        raise typer.Exit(2)
    where = JobFilter(
        states=tuple(JobState(s) for s in state or ()),
        batch_id=batch,
        provider=provider,
        error_code=error_code,
        since=since,
        until=until,
    )
    report = jobs.retry_matching(where, reason or "", dry_run=dry_run)
    _retry_report(report)


def _retry_report(report: RetryReport) -> None:
    verb = "would retry" if report.dry_run else "retried"
    count = report.matched if report.dry_run else report.retried
    out.print(f"{verb} {count} job(s)")
    table = Table("id", "state", "provider", "error", "external id", title="sample")
    for job in report.sample:
        table.add_row(
            str(job.id), _state(job.state), job.provider or "", job.error_code or "",
            job.external_id or "",
        )  # fmt: skip
    out.print(table)


@jobs_app.command("cancel")
def cancel(
    job_id: Annotated[uuid.UUID, typer.Argument(help="A job that has not finished.")],
    reason: Annotated[str | None, typer.Option(help="Why; kept in the job's history.")] = None,
) -> None:
    """Cancel a job; the provider is asked to stop, best effort."""
    job = build_container().jobs("cli").cancel(job_id, reason)
    out.print(f"{job.id} {_state(job.state)}")


_COLOURS = {"succeeded": "green", "failed": "red", "canceled": "yellow"}


def _state(state: JobState) -> str:
    colour = _COLOURS.get(state.value, "cyan")
    return f"[{colour}]{state.value}[/{colour}]"


def _show(container: Container, detail: JobDetail) -> None:
    job: JobRecord = detail.job
    out.print(f"[bold]{job.id}[/bold] {_state(job.state)}  {job.model}  cost ${job.cost_usd:.2f}")
    out.print(f"prompt: {job.input.get('prompt')}")
    if job.error_code:
        out.print(f"error: [red]{job.error_code}[/red] {job.error_message or ''}")
    attempts = Table("attempt", "provider", "outcome", "request id", "error", title="attempts")
    for a in detail.attempts:
        attempts.add_row(
            str(a.number), a.provider, a.outcome, a.request_id or "", a.error_code or ""
        )
    out.print(attempts)
    if detail.outputs:
        outputs = Table("key", "type", "size", "bytes", "sha256", "url", title="outputs")
        seconds = container.settings.presign_get_seconds
        for o in detail.outputs:
            outputs.add_row(
                o.key,
                o.content_type,
                f"{o.width}x{o.height}",
                str(o.bytes),
                o.sha256[:16],
                container.storage.presign_get(o.key, seconds),
            )
        out.print(outputs)
    events = Table("at", "transition", "state", "attempt", "actor", "reason", title="history")
    for e in detail.events:
        events.add_row(
            e.at.strftime("%H:%M:%S.%f")[:-3],
            e.transition,
            e.state.value,
            str(e.attempt),
            e.actor or "",
            e.reason or "",
        )
    out.print(events)
    sys.stdout.flush()
