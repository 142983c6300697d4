"""Logs: one structured line per event, naming the job it is about, secrets kept out.

Every process logs through the standard library, rendered by structlog: JSON lines in
production, readable lines in development (``EDITQ_LOG_FORMAT`` overrides). While a task
or a webhook works on a job, :func:`task_context` and :func:`bind_job` put ``job_id``,
``attempt``, ``provider`` and ``batch_id`` on every line it writes, whichever library writes
it.

Two kinds of URL carry secrets in their query string: Runware callback URLs (a per-attempt
``token``) and presigned S3 URLs (``X-Amz-Signature``, ``X-Amz-Credential``). The API's
access log would print the former on every Runware callback; every line is blanked of them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars
from uvicorn.config import LOGGING_CONFIG

LogFormat = Literal["json", "console"]

_SECRET_PARAMS = re.compile(
    r"(?P<key>(?:token|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&\s\"']+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the values of secret-bearing query parameters replaced by ``***``."""
    return _SECRET_PARAMS.sub(r"\g<key>***", text)


class RedactSecrets(logging.Filter):
    """A logging filter that blanks secret query parameters in a record's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def formatter(fmt: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """The formatter every handler uses: the bound job fields, a time, secrets blanked."""
    shared: list[Any] = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
    )


def configure(fmt: LogFormat, level: str = "INFO") -> None:
    """Send every log record of this process to stderr through :func:`formatter`."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    guard(root)


def format_of(environ: Mapping[str, str]) -> LogFormat:
    """``EDITQ_LOG_FORMAT`` (``json`` or ``console``) when set; otherwise readable lines in
    development (``EDITQ_ENV=development``) and JSON lines elsewhere.

    Read from the environment itself, before any setting: an emulator logs too, and a
    process whose settings are wrong must still say so in its own format.
    """
    chosen = environ.get("EDITQ_LOG_FORMAT", "").strip().lower()
    if chosen == "json":
        return "json"
    if chosen == "console":
        return "console"
    return "console" if environ.get("EDITQ_ENV") == "development" else "json"


@contextmanager
def task_context(**fields: object) -> Iterator[None]:
    """Name what the block works on (``job_id``, ``attempt``, ...) on every line it logs.

    A worker thread runs one task after another: what one task bound must not name the
    next one's lines, so the fields are cleared on the way in and on the way out.
    """
    clear_contextvars()
    bind_contextvars(
        **{name: str(v) if isinstance(v, uuid.UUID) else v for name, v in fields.items()}
    )
    try:
        yield
    finally:
        clear_contextvars()


def bind_job(job: Any, attempt: int | None = None, provider: str | None = None) -> None:
    """Add what is known once the job is read: its batch, attempt and provider."""
    fields: dict[str, object] = {"job_id": str(job.id)}
    if job.batch_id is not None:
        fields["batch_id"] = str(job.batch_id)
    if attempt is not None:
        fields["attempt"] = attempt
    if provider or job.provider:
        fields["provider"] = provider or job.provider
    bind_contextvars(**fields)


def guard(logger: logging.Logger) -> None:
    """Put :class:`RedactSecrets` on every handler of ``logger``, and quiet httpx.

    httpx logs each request's full URL at INFO; a presigned URL is a credential, so those
    lines are kept to warnings and above.
    """
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def uvicorn_log_config(fmt: LogFormat) -> dict[str, object]:
    """uvicorn's own logging configuration, rendered as every other line is."""
    config: dict[str, object] = {
        **LOGGING_CONFIG,
        "filters": {"redact": {"()": "worker.logs.RedactSecrets"}},
        "formatters": {"editq": {"()": "worker.logs.formatter", "fmt": fmt}},
    }
    handlers: Mapping[str, Mapping[str, Any]] = LOGGING_CONFIG["handlers"]
    config["handlers"] = {
        name: {**handler, "formatter": "editq", "filters": ["redact"]}
        for name, handler in handlers.items()
    }
    return config
