"""Where the next attempt of a job goes after a failure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models.state import JobState
from worker.faults import ErrorKind, Fault
from worker.pipeline.dispatch import next_provider, within_budget
from worker.values.records import BudgetUse, Candidate, JobRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job(*providers: str) -> JobRecord:
    return JobRecord(
        id=uuid.uuid4(), state=JobState.SUBMITTING, model="flux-kontext-pro", input={},
        providers=providers, provider=providers[0], attempt=1, failed_attempts=0,
        max_attempts=5, priority=0, external_id=None, batch_id=None, callback_url=None, metadata={},
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


BATCH, OTHER = uuid.uuid4(), uuid.uuid4()


def due(batch: uuid.UUID | None, images: int = 1) -> Candidate:
    return Candidate(uuid.uuid4(), batch, "flux-kontext-pro", images)


def test_a_budget_admits_jobs_until_the_next_would_pass_it() -> None:
    budgets = {BATCH: BudgetUse(BATCH, Decimal("0.20"), Decimal("0.08"))}
    jobs = [due(BATCH), due(BATCH, images=2), due(BATCH), due(None), due(OTHER)]
    over: set[uuid.UUID] = set()
    taken = within_budget(jobs, "fal", budgets, over)
    # $0.08 committed: +$0.04 (0.12), +$0.08 for two images (0.20, exactly the budget) fit;
    # the next (+$0.04) would pass it and stops the batch. Other jobs are not held to it.
    assert taken == [jobs[0].job_id, jobs[1].job_id, jobs[3].job_id, jobs[4].job_id]
    assert over == {BATCH}
    assert budgets[BATCH].committed_usd == Decimal("0.20")


def test_once_a_batch_is_over_budget_none_of_its_jobs_is_taken() -> None:
    budgets = {BATCH: BudgetUse(BATCH, Decimal("1.00"), Decimal("0"))}
    assert within_budget([due(BATCH)], "fal", budgets, {BATCH}) == []
