"""Secret query parameters never reach a log line."""

from __future__ import annotations

import json
import logging
import uuid
from types import SimpleNamespace

import pytest

from worker.logs import (
    LogFormat,
    RedactSecrets,
    bind_job,
    format_of,
    formatter,
    guard,
    redact,
    task_context,
    uvicorn_log_config,
)


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


def test_every_uvicorn_handler_carries_the_filter_and_our_format() -> None:
    config = uvicorn_log_config("json")
    handlers = config["handlers"]
    assert isinstance(handlers, dict)
    assert all(h["filters"] == ["redact"] for h in handlers.values())
    assert all(h["formatter"] == "editq" for h in handlers.values())


def rendered(fmt: LogFormat, logger: str, message: str, *args: object) -> str:
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, args, None)
    return formatter(fmt).format(record)


def test_a_job_s_fields_are_on_every_line_in_its_context_and_gone_after() -> None:
    job = uuid.uuid4()
    with task_context(job_id=job, attempt=2):
        bind_job(SimpleNamespace(id=job, batch_id="b-1", provider="fal"), provider="runware")
        inside = json.loads(rendered("json", "celery.app.trace", "working on %s", "it"))
    after = json.loads(rendered("json", "editq.pipeline", "tick"))

    assert inside["job_id"] == str(job) and inside["attempt"] == 2
    assert inside["batch_id"] == "b-1" and inside["provider"] == "runware"
    assert inside["event"] == "working on it" and inside["level"] == "info"
    assert inside["logger"] == "celery.app.trace" and inside["timestamp"].endswith("Z")
    assert "job_id" not in after and "attempt" not in after


def test_a_new_task_does_not_inherit_the_last_one_s_job() -> None:
    with task_context(job_id="first", attempt=1):
        bind_job(SimpleNamespace(id="first", batch_id="batch", provider="fal"))
    with task_context(callback_id="cb"):
        line = json.loads(rendered("json", "editq.callbacks", "delivering"))
    assert line["callback_id"] == "cb"
    assert "job_id" not in line and "batch_id" not in line


def test_secrets_are_blanked_in_structured_lines_too() -> None:
    line = rendered("json", "uvicorn.access", "POST %s", "/v1/webhooks/runware?token=s3cr3t")
    assert "s3cr3t" not in line and "token=***" in json.loads(line)["event"]


def test_development_reads_as_text_and_production_as_json() -> None:
    assert format_of({"EDITQ_ENV": "development"}) == "console"
    assert format_of({}) == "json"
    assert format_of({"EDITQ_ENV": "development", "EDITQ_LOG_FORMAT": "json"}) == "json"
    assert format_of({"EDITQ_LOG_FORMAT": "Console"}) == "console"
    with task_context(job_id="j-1"):
        text = rendered("console", "editq.pipeline", "submitted to %s", "fal")
    assert "submitted to fal" in text and "job_id=j-1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


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
