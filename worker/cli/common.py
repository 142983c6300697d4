"""What every command group shares: building the container, the consoles, the home option."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from worker.config import load_settings
from worker.wiring import Container, build

out = Console()
err = Console(stderr=True)

HomeOption = Annotated[
    Path,
    typer.Option("--home", envvar="EDITQ_HOME", help="Where embedded services keep their data."),
]
DEFAULT_HOME = Path(".editq")


def build_container() -> Container:
    """This command's container, built from the environment's settings."""
    return build(load_settings())


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr with secrets blanked, as every long-running process does."""
    from worker.logs import guard

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    guard(logging.getLogger())
