"""What every command group shares: building the container, the consoles, the home option."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError
from rich.console import Console

from worker.config import Settings, load_settings
from worker.errors import EditqError, ServiceUnreachable, SettingsInvalid
from worker.wiring import Container, build

if TYPE_CHECKING:
    from worker.logs import LogFormat

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


def setup_logging(level: str = "INFO") -> LogFormat:
    """Log to stderr, structured and with secrets blanked, as every long-running process
    does; returns the format chosen (:func:`worker.logs.format_of`)."""
    from worker.logs import configure, format_of

    fmt = format_of(os.environ)
    configure(fmt, level)
    return fmt


#: What to do when the embedded services are what editq should use.
FIX = 'start the embedded services and point editq at them: eval "$(editq services env)"'


def as_user_error(exc: Exception) -> EditqError | None:
    """The one-line error a user should see for ``exc``, when it is about their setup.

    A service that does not answer (PostgreSQL, the broker, S3) becomes
    :class:`ServiceUnreachable` naming it, where it was looked for, and the fix; a setting
    pydantic refuses becomes :class:`SettingsInvalid` naming the variable. Anything else is
    a bug and keeps its traceback (None).
    """
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        problems = "; ".join(
            f"EDITQ_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        return SettingsInvalid(f"invalid setting {problems}")
    service = _unreachable_service(exc)
    if service is None:
        return None
    name, setting = service
    where = _configured(setting)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return ServiceUnreachable(
        f"cannot reach {name} at {where} ({reason}); {FIX}, or set {setting}",
        service=name,
    )


def _unreachable_service(exc: Exception) -> tuple[str, str] | None:
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc
    from botocore.exceptions import BotoCoreError

    from worker.storage.base import StorageError

    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return "PostgreSQL", "EDITQ_DATABASE_URL"
    if isinstance(exc, kombu.exceptions.OperationalError | redis.exceptions.ConnectionError):
        return "the broker (Valkey/Redis)", "EDITQ_BROKER_URL"
    if isinstance(exc, StorageError | BotoCoreError):
        return "S3", "EDITQ_S3_ENDPOINT_URL"
    return None


def _configured(setting: str) -> str:
    """Where ``setting`` points (host and port only: a URL may carry a password)."""
    try:
        settings = load_settings()
    except ValidationError:
        return "the configured address"
    value = {
        "EDITQ_DATABASE_URL": settings.database_url,
        "EDITQ_BROKER_URL": settings.broker_url,
        "EDITQ_S3_ENDPOINT_URL": settings.s3_endpoint_url or "AWS S3",
    }[setting]
    parts = urlsplit(value)
    return f"{parts.hostname}:{parts.port}" if parts.hostname and parts.port else value
