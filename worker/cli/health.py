"""``editq healthcheck worker|scheduler``: whether this host's process is alive, for a
container's healthcheck (exit 0 alive, 1 not, with one line saying why)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.common import err

health_app = typer.Typer(
    help="Whether a worker or the scheduler on this host is alive.", no_args_is_help=True
)


@health_app.command("worker")
def worker(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """Ask this host's Celery worker to answer a ping through the broker."""
    from worker.celery_app import app as celery
    from worker.celery_app import configure
    from worker.config import load_settings

    configure(celery, load_settings())
    node = f"celery@{socket.gethostname()}"
    answers = celery.control.ping(destination=[node], timeout=timeout)
    if not any(node in answer for answer in answers or []):
        err.print(f"no answer from {node} within {timeout:g} s", markup=False)
        raise typer.Exit(1)


@health_app.command("scheduler")
def scheduler(
    heartbeat_file: Annotated[Path, typer.Option(help="The file `editq scheduler` touches.")],
    max_age: Annotated[float, typer.Option(help="Seconds since the last tick, at most.")] = 30.0,
) -> None:
    """Check that the scheduler ticked lately (it touches its heartbeat file every tick)."""
    try:
        age = time.time() - heartbeat_file.stat().st_mtime
    except FileNotFoundError:
        err.print(f"{heartbeat_file} does not exist: the scheduler has not ticked", markup=False)
        raise typer.Exit(1) from None
    if age > max_age:
        err.print(f"the scheduler last ticked {age:.0f} s ago (at most {max_age:g})", markup=False)
        raise typer.Exit(1)
