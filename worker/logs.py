"""Keeping secrets out of logs.

Two kinds of URL carry secrets in their query string: Runware callback URLs (a per-attempt
``token``) and presigned S3 URLs (``X-Amz-Signature``, ``X-Amz-Credential``). The API's
access log would print the former on every Runware callback; this filter blanks them.
"""

from __future__ import annotations

import logging
import re

from uvicorn.config import LOGGING_CONFIG

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


def uvicorn_log_config() -> dict[str, object]:
    """uvicorn's own logging configuration with :class:`RedactSecrets` on every handler."""
    config: dict[str, object] = {
        **LOGGING_CONFIG,
        "filters": {"redact": {"()": "worker.logs.RedactSecrets"}},
    }
    handlers = LOGGING_CONFIG["handlers"]
    config["handlers"] = {
        name: {**handler, "filters": ["redact"]} for name, handler in handlers.items()
    }
    return config
