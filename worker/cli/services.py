"""``editq services ...`` and ``editq db ...``: the embedded services, the schema, pruning."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.common import DEFAULT_HOME, HomeOption, build_container, err
from worker.config import load_settings

if TYPE_CHECKING:
    from worker.usecases.retention import Retention

services_app = typer.Typer(
    help="Embedded PostgreSQL, Valkey and S3 for development.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema and retention.", no_args_is_help=True)


@services_app.command("up")
def services_up(home: HomeOption = DEFAULT_HOME) -> None:
    """Start embedded PostgreSQL, Valkey and S3 (idempotent) and print their environment."""
    from worker.dev import services

    typer.echo(services.up(home).shell())


@services_app.command("down")
def services_down(home: HomeOption = DEFAULT_HOME) -> None:
    """Stop the embedded services."""
    from worker.dev import services

    stopped = services.down(home)
    err.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("env")
def services_env(home: HomeOption = DEFAULT_HOME) -> None:
    """Print KEY=VALUE lines for `eval "$(editq services env)"`."""
    from worker.dev import services

    typer.echo(services.env(home).shell())


@services_app.command("status")
def services_status(home: HomeOption = DEFAULT_HOME) -> None:
    """Say which embedded services are running."""
    from worker.dev import services

    for name, running in services.status(home).items():
        typer.echo(f"{name}: {'running' if running else 'stopped'}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database to the latest schema (or to --revision)."""
    from worker.migrate import upgrade

    upgrade(load_settings().direct_url(), revision)
    err.print(f"database at {revision}")


@db_app.command("prune")
def db_prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")
    ] = False,
) -> None:
    """Delete finished jobs past EDITQ_RETAIN_DAYS now, as the scheduler does every so often."""
    container = build_container()
    try:
        _prune(container.retention("cli"), dry_run)
    finally:
        container.close()


def _prune(retention: Retention, dry_run: bool) -> None:
    if retention.days is None:
        err.print("[red]retention is off[/red]: set EDITQ_RETAIN_DAYS to prune")
        raise typer.Exit(2)
    if dry_run:
        counts = retention.preview()
        assert counts is not None
        typer.echo(f"completed before {retention.cutoff():%Y-%m-%d %H:%M} UTC, would delete:")
        for name, value in dataclasses.asdict(counts).items():
            typer.echo(f"  {name:<10} {value:>10,}")
        return
    report = retention.prune(rounds=1_000_000)
    typer.echo(f"deleted {report.jobs:,} job(s) and {report.batches:,} batch(es)")
    for key in report.archived:
        typer.echo(f"  archived to {key}")
