"""``editq services ...`` and ``editq db ...``: the embedded services and the schema."""

from __future__ import annotations

import typer

from worker.cli.common import DEFAULT_HOME, HomeOption, err
from worker.config import load_settings

services_app = typer.Typer(
    help="Embedded PostgreSQL, Valkey and S3 for development.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


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

    upgrade(load_settings().database_url, revision)
    err.print(f"database at {revision}")
