"""``editq batch ...``: submit a catalog file, follow it, cancel it, download its outputs.

Like ``editq jobs``, these talk to PostgreSQL and S3 directly through the use cases the API
calls.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.api.schemas.batches import BatchPage, batch_out
from worker.cli.common import build_container, err, out
from worker.cli.output import (
    JsonOption,
    OnFailureChoice,
    Provider,
    RoutingChoice,
    output_names,
    print_json,
    print_table,
    whole,
)
from worker.storage.base import Storage
from worker.usecases.batch_ingest import BatchOptions
from worker.values.batch_file import Reject, format_of
from worker.values.batch_status import BatchStatus
from worker.values.canonical import ModelName
from worker.values.quality_policy import OnFailure, QualityPolicy
from worker.values.routing import Routing
from worker.wiring import Container

batch_app = typer.Typer(
    help="Catalog batches: submit a CSV/JSONL file, follow it, get its outputs.",
    no_args_is_help=True,
)

#: Bad rows printed after a submit; every one is in the batch's errors.jsonl.
REJECTS_PRINTED = 20
#: Parallel downloads of ``batch results``.
DOWNLOADS = 8


@batch_app.command("submit")
def submit(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV (header: external_id,image_url,prompt,...) or JSONL, one row per edit.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    model: Annotated[ModelName, typer.Option(help="Default model of the rows.")] = (
        "flux-kontext-pro"
    ),
    provider: Annotated[
        list[Provider] | None, typer.Option(help="Provider order; repeat for several.")
    ] = None,
    priority: Annotated[int, typer.Option(min=-100, max=100, help="Default row priority.")] = 0,
    budget: Annotated[
        float | None, typer.Option(min=0.0001, help="Stop dispatch before this many USD.")
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="Receives batch.completed, signed.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse the file if a row is bad.")] = (
        False
    ),
    on_failure: Annotated[
        OnFailureChoice | None,
        typer.Option(help="What a failed quality check does; unset: EDITQ_QUALITY_ON_FAILURE."),
    ] = None,
    routing: Annotated[
        RoutingChoice | None,
        typer.Option(help="How the rows' providers share them; unset: EDITQ_ROUTING."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting the same file with it again is a no-op.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the batch until it ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 24 * 3600,
) -> None:
    """Submit a catalog file: a job per good row; bad rows are listed by line, field and rule."""
    container = build_container()
    options = BatchOptions(
        model=model,
        providers=tuple(dict.fromkeys(p.value for p in provider or ())),
        priority=priority,
        callback_url=callback_url,
        budget_usd=None if budget is None else Decimal(str(budget)),
        quality=None if on_failure is None else QualityPolicy(cast(OnFailure, on_failure.value)),
        routing=None if routing is None else cast(Routing, routing.value),
        strict=strict,
    )
    batches = container.batches("cli")
    with file.open("rb") as source:
        submitted = batches.submit(source, format_of(filename=file.name), options, idempotency_key)
    batch = submitted.batch
    typer.echo(str(batch.id))
    err.print(
        f"{batch.rows_accepted} row(s) accepted, {batch.rows_rejected} rejected"
        + ("" if submitted.created else " (submitted before with this idempotency key)")
    )
    _print_rejects(list(submitted.rejects[:REJECTS_PRINTED]), batch.rows_rejected)
    if wait:
        final = _follow(container, batch.id, timeout)
        _print_status(final)
        raise typer.Exit(0 if final.failed + final.canceled == 0 else 1)


def _print_rejects(rejects: list[Reject], total: int) -> None:
    if not rejects:
        return
    table = Table("line", whole("external id"), "field", "rule", "message", title="rejected rows")
    for r in rejects:
        table.add_row(str(r.line), r.external_id or "", r.field, r.rule, r.message)
    print_table(table, err)
    if total > len(rejects):
        err.print(f"... and {total - len(rejects)} more; all are in the batch's errors.jsonl")


def _follow(container: Container, batch_id: uuid.UUID, timeout: float) -> BatchStatus:
    batches = container.batches("cli")
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("[bold]{task.fields[state]}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[done]} done[/green] [red]{task.fields[failed]} failed[/red] "
            "[yellow]{task.fields[canceled]} canceled[/yellow] "
            "[cyan]{task.fields[flying]} in flight[/cyan] steps {task.fields[steps]} "
            "{task.fields[rate]}/s "
            "ETA {task.fields[eta]} ${task.fields[cost]}"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        status = batches.status(batch_id)
        bar = progress.add_task("batch", total=status.batch.rows_accepted, **_fields(status))
        while True:
            finished = status.ended
            progress.update(bar, completed=finished, **_fields(status))
            if status.finished:
                return status
            if time.monotonic() > deadline:
                err.print(f"[yellow]still {status.batch.state} after {timeout:.0f} s[/yellow]")
                raise typer.Exit(1)
            time.sleep(1.0)
            status = batches.status(batch_id)


def _fields(status: BatchStatus) -> dict[str, Any]:
    eta = status.eta_seconds
    return {
        "state": status.batch.state.value,
        "done": status.done,
        "failed": status.failed,
        "canceled": status.canceled,
        "flying": status.in_flight,
        "steps": f"{status.progress.steps_done}/{status.progress.steps_total}",
        "rate": f"{status.rate:.1f}",
        "eta": "-" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta)),
        "cost": f"{status.progress.cost_usd:.2f}",
    }


@batch_app.command("status")
def status(
    batch_id: Annotated[uuid.UUID, typer.Argument(help="The batch's id.")],
    as_json: JsonOption = False,
) -> None:
    """A batch's counts by state, cost, rate, ETA and budget."""
    _print_status(build_container().batches("cli").status(batch_id), as_json)


def _print_status(status: BatchStatus, as_json: bool = False) -> None:
    if as_json:
        print_json(batch_out(status))
        return
    batch = status.batch
    table = Table("", whole(""), show_header=False)
    table.add_row("batch", str(batch.id))
    table.add_row("state", batch.state.value)
    table.add_row("rows", f"{batch.rows_accepted} accepted, {batch.rows_rejected} rejected")
    for state, count in sorted(status.progress.counts.items()):
        table.add_row(state.value, str(count))
    if status.progress.steps_total > batch.rows_accepted:
        progress = status.progress
        table.add_row("steps", f"{progress.steps_done} of {progress.steps_total} done")
    table.add_row("cost", f"${status.progress.cost_usd:.2f}")
    table.add_row("rate", f"{status.rate:.2f} jobs/s (last minute)")
    eta = status.eta_seconds
    table.add_row("ETA", "-" if eta is None else f"{eta:.0f} s")
    if batch.budget_usd is not None:
        stopped = " (dispatch stopped: budget reached)" if batch.budget_exhausted_at else ""
        table.add_row("budget", f"${batch.budget_usd:.2f}{stopped}")
    print_table(table)


@batch_app.command("list")
def list_batches(
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The newest batches."""
    batches = build_container().batches("cli")
    recent = batches.recent(limit)
    if as_json:
        print_json(BatchPage(batches=[batch_out(batches.status(b.id)) for b in recent]))
        return
    table = Table(whole("id"), "state", "accepted", "rejected", whole("created"))
    for b in recent:
        table.add_row(
            str(b.id),
            b.state.value,
            str(b.rows_accepted),
            str(b.rows_rejected),
            b.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    print_table(table)


@batch_app.command("cancel")
def cancel(
    batch_id: Annotated[uuid.UUID, typer.Argument(help="A running batch.")],
    reason: Annotated[str | None, typer.Option(help="Why; kept in each job's history.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel every unfinished job of a batch; its result files are still written."""
    _print_status(build_container().batches("cli").cancel(batch_id, reason), as_json)


@batch_app.command("results")
def results(
    batch_id: Annotated[uuid.UUID, typer.Argument(help="A completed or canceled batch.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to write into.")] = (
        Path("batch-results")
    ),
) -> None:
    """Download a finished batch's outputs, named by external id, with its result files."""
    container = build_container()
    files = container.batches("cli").results(batch_id)
    storage = container.storage
    output.mkdir(parents=True, exist_ok=True)
    results_jsonl = storage.get(files.results_key)
    (output / "results.jsonl").write_bytes(results_jsonl)
    (output / "errors.jsonl").write_bytes(storage.get(files.errors_key))
    wanted = [
        (output / name, key)
        for line in results_jsonl.splitlines()
        for name, key in output_names(json.loads(line))
    ]
    columns = (TextColumn("downloading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress, ThreadPoolExecutor(DOWNLOADS) as pool:
        bar = progress.add_task("outputs", total=len(wanted))
        for _ in pool.map(lambda item: _download(storage, *item), wanted):
            progress.advance(bar)
    errors = (output / "errors.jsonl").read_text().count("\n")
    out.print(f"{len(wanted)} output(s), {errors} error(s) in {output}/")


def _download(storage: Storage, path: Path, key: str) -> None:
    path.write_bytes(storage.get(key))
