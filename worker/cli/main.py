"""``editq``: one command for services, processes, producers and ops.

Each group of subcommands lives in a module of its own; this one assembles them and turns
an error into one line and an exit code.
"""

from __future__ import annotations

import sys

import typer

from worker.cli import batch, callbacks, jobs, processes, services
from worker.cli.common import err
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
app.command("submit")(jobs.submit)
app.registered_commands += processes.app.registered_commands


def main() -> None:
    """Entry point of the ``editq`` script: errors become a message and an exit code."""
    try:
        app()
    except EditqError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}")
        sys.exit(exc.exit_code)
