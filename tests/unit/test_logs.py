"""Secret query parameters never reach a log line."""

from __future__ import annotations

import logging

from worker.logs import RedactSecrets, guard, redact, uvicorn_log_config


def test_tokens_and_signatures_are_blanked() -> None:
    line = (
        "POST /v1/webhooks/runware?attempt=5c1e&token=9f2a1b HTTP/1.1; "
        "GET /editq/outputs/a.png?X-Amz-Credential=AKID%2F2026&X-Amz-Signature=abc123&x=1"
    )
    assert redact(line) == (
        "POST /v1/webhooks/runware?attempt=5c1e&token=*** HTTP/1.1; "
        "GET /editq/outputs/a.png?X-Amz-Credential=***&X-Amz-Signature=***&x=1"
    )


def test_the_filter_rewrites_access_log_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/v1/webhooks/runware?attempt=1&token=s3cr3t", "1.1", 200),
        None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert "s3cr3t" not in record.getMessage()
    assert "token=***" in record.getMessage()


def test_every_uvicorn_handler_carries_the_filter() -> None:
    config = uvicorn_log_config()
    handlers = config["handlers"]
    assert isinstance(handlers, dict)
    assert all(h["filters"] == ["redact"] for h in handlers.values())


def test_guard_filters_a_loggers_handlers_and_quiets_httpx() -> None:
    logger = logging.getLogger("editq.test.guard")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        guard(logger)
        guard(logger)  # idempotent
        assert sum(isinstance(f, RedactSecrets) for f in handler.filters) == 1
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    finally:
        logger.removeHandler(handler)
