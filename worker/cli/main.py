"""``editq``: one command for services, processes, producers and ops.

Each group of subcommands lives in a module of its own; this one assembles them and turns
an error into one line and an exit code.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.markup import escape

from worker.cli import batch, callbacks, console, health, jobs, processes, providers, services
from worker.cli.common import as_user_error, err
from worker.errors import EditqError

app = typer.Typer(
    help="editq: asynchronous AI image edits on FLUX.1 Kontext providers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(services.services_app, name="services")
app.add_typer(services.db_app, name="db")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(batch.batch_app, name="batch")
app.add_typer(callbacks.callbacks_app, name="callbacks")
app.add_typer(health.health_app, name="healthcheck")
app.add_typer(providers.providers_app, name="providers")
app.add_typer(console.console_app, name="console")
app.command("submit")(jobs.submit)
app.command("schedulers")(providers.schedulers)
app.registered_commands += processes.app.registered_commands


def main() -> None:
    """Entry point of the ``editq`` script: errors become a message and an exit code."""
    try:
        app()
    except EditqError as exc:
        fail(exc)
    except Exception as exc:
        mapped = as_user_error(exc)
        if mapped is None:
            raise
        fail(mapped)


def fail(exc: EditqError) -> NoReturn:
    """Print ``exc`` as one line (and the rows a refused batch file broke) and exit."""
    err.print(
        f"[red]error[/red] {exc.code}: {escape(exc.message)}", highlight=False, soft_wrap=True
    )
    rows = exc.details.get("rows")
    if isinstance(rows, list) and len(rows) > 1:
        for row in rows:
            err.print(
                f"  line {row['line']}: {row['field']}: {row['message']} ({row['rule']})",
                markup=False,
                highlight=False,
            )
        if exc.details.get("rejected", 0) > len(rows):
            err.print(f"  ... and {exc.details['rejected'] - len(rows)} more", markup=False)
    sys.exit(exc.exit_code)
