"""``editq providers``: each provider's state, and an operator's controls on it."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.common import build_container, err
from worker.cli.output import JsonOption, Provider, print_json, print_table, whole
from worker.values.schedulers import Schedulers

providers_app = typer.Typer(
    help="Each provider's breaker, flight and limits; pause, resume and size providers.",
    invoke_without_command=True,
)


@providers_app.callback()
def show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Each provider's breaker, jobs in flight, learned limit (of its capacity), seconds per
    job and submit rate, and whether an operator paused it; then the schedulers, and
    which one leads (``editq schedulers --json`` for them alone)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    container = build_container()
    statuses = container.provider_status("cli")
    if as_json:
        print_json(statuses)
        return
    table = Table(
        "provider", "breaker", "failures", "in flight", "limit", "of", "s/job", "submits/s"
    )
    for s in statuses:
        colour = "green" if s.breaker == "closed" and s.paused_at is None else "red"
        state = s.breaker if s.paused_at is None else f"paused by {s.paused_by}: {s.paused_reason}"
        growing = " (growing)" if s.slow_start and s.limit < s.capacity else ""
        table.add_row(
            s.name,
            f"[{colour}]{state}[/{colour}]",
            str(s.consecutive_failures),
            str(s.in_flight),
            f"{s.limit}{growing}",
            f"{s.capacity}{' (set at runtime)' if s.capacity_overridden else ''}",
            "-" if s.latency_seconds is None else f"{s.latency_seconds:.1f}",
            "unlimited" if s.submit_rate is None else f"{s.submit_rate:g}",
        )
    print_table(table)
    print_schedulers(container.schedulers("cli"))


def schedulers(as_json: JsonOption = False) -> None:
    """The running schedulers: which one leads (dispatches), how long its lease has left,
    and how each wakes between ticks (LISTEN, or polling behind a transaction pooler)."""
    seen = build_container().schedulers("cli")
    if as_json:
        print_json(seen.as_dict())
        return
    print_schedulers(seen)


def print_schedulers(seen: Schedulers) -> None:
    """The schedulers, the leader first, or a warning that none leads."""
    from rich.table import Table

    if seen.leader is None:
        err.print("[red]no scheduler leads: nothing is dispatched[/red] (start `editq scheduler`)")
    if not seen.running:
        return
    table = Table(whole("scheduler"), "role", "wakes by", "last tick", whole("since"))
    for s in seen.running:
        role = f"[green]leads[/green] (lease {seen.expires_in:g} s)" if s.leads else "standby"
        since = (seen.since if s.leads and seen.since else s.started_at).isoformat("T", "seconds")
        table.add_row(s.id, role, s.wakeups, f"{s.seen_seconds_ago:g} s ago", since)
    print_table(table)


@providers_app.command("pause")
def pause(
    provider: Annotated[Provider, typer.Argument(help="The provider to send nothing.")],
    reason: Annotated[str, typer.Option(help="Why; shown with the provider until resumed.")],
) -> None:
    """Send a provider nothing until resumed; its queued jobs move on by their routing."""
    changed = build_container().provider_controls("cli").pause(provider.value, reason)
    typer.echo(f"{provider.value} paused" if changed else f"{provider.value} was paused already")


@providers_app.command("resume")
def resume(provider: Annotated[Provider, typer.Argument(help="A paused provider.")]) -> None:
    """Let dispatch send a paused provider jobs again."""
    changed = build_container().provider_controls("cli").resume(provider.value)
    typer.echo(f"{provider.value} resumed" if changed else f"{provider.value} was not paused")


@providers_app.command("capacity")
def capacity(
    provider: Annotated[Provider, typer.Argument(help="The provider to size.")],
    jobs: Annotated[
        int | None, typer.Argument(help="Jobs in flight at most, from now on, in every process.")
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Back to EDITQ_<PROVIDER>_MAX_IN_FLIGHT.")
    ] = False,
) -> None:
    """Set a provider's in-flight ceiling at runtime, or reset it to the configured one."""
    if (jobs is None) == (not reset):
        err.print("[red]invalid capacity[/red]: give a number of jobs, or --reset")
        raise typer.Exit(2)
    build_container().provider_controls("cli").set_capacity(provider.value, jobs)
    shown = "the configured capacity" if jobs is None else f"{jobs} jobs in flight at most"
    typer.echo(f"{provider.value}: {shown}")
