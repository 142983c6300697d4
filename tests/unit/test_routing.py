"""Where the next attempt of a job goes after a failure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models.state import JobState
from worker.providers.base import ErrorKind, Fault
from worker.records import JobRecord
from worker.routing import next_provider

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job(*providers: str) -> JobRecord:
    return JobRecord(
        id=uuid.uuid4(), state=JobState.SUBMITTING, model="flux-kontext-pro", input={},
        providers=providers, provider=providers[0], attempt=1, failed_attempts=0,
        max_attempts=5, priority=0, external_id=None, callback_url=None, metadata={},
        excluded_providers={}, idempotency_key=None, request_hash=None, run_after=NOW,
        error_code=None, error_message=None, cost_usd=Decimal(0), created_at=NOW,
        updated_at=NOW, completed_at=None,
    )  # fmt: skip


RETRYABLE = Fault(ErrorKind.RETRYABLE, "provider_unavailable", "503")


@pytest.mark.parametrize(
    ("current", "expected"), [("fal", "runware"), ("runware", "runflow"), ("runflow", "fal")]
)
def test_a_retryable_failure_moves_to_the_next_provider_listed(current: str, expected: str) -> None:
    assert next_provider(job("fal", "runware", "runflow"), current, RETRYABLE) == expected


def test_a_single_provider_job_stays() -> None:
    assert next_provider(job("fal"), "fal", RETRYABLE) == "fal"


@pytest.mark.parametrize("kind", [ErrorKind.RATE_LIMITED, ErrorKind.TERMINAL])
def test_rate_limits_and_terminal_errors_do_not_move(kind: ErrorKind) -> None:
    assert next_provider(job("fal", "runware"), "fal", Fault(kind, "x", "y")) == "fal"
