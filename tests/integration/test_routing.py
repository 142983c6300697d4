"""Routing on real PostgreSQL and the emulators: spill-over, learned limits, price and cost."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from emulators.server import RunningServer
from models.state import JobState
from tests.factories import job_request
from tests.integration.conftest import RUNWARE_REPORTED_COST
from tests.waiting import wait_until
from worker.api.schemas.job_out import detail_out
from worker.pipeline.dispatch import dispatch
from worker.pipeline.steps import Pipeline
from worker.usecases.provider_status import ProviderStatus
from worker.values import pricing
from worker.values.routing import Routing
from worker.wiring import Container

pytestmark = pytest.mark.integration


def _pipeline(container: Container, **capacity: int) -> Pipeline:
    policy = container.policy()
    limits = dataclasses.replace(policy.limits, capacity=capacity)
    return container.pipeline("test", dataclasses.replace(policy, limits=limits))


def _queue(container: Container, count: int, routing: Routing, *providers: str) -> list[uuid.UUID]:
    jobs = container.jobs("test")
    return [
        jobs.create(job_request(providers=providers, routing=routing))[0].id for _ in range(count)
    ]


def _where(container: Container, ids: list[uuid.UUID]) -> dict[str, int]:
    """How many of ``ids`` each provider claimed."""
    claimed: dict[str, int] = {}
    for job_id in ids:
        job = container.jobs("test").get(job_id).job
        if job.state is JobState.SUBMITTING:
            assert job.provider is not None
            claimed[job.provider] = claimed.get(job.provider, 0) + 1
    return claimed


def test_a_spread_job_spills_over_to_the_next_provider_while_the_first_is_full(
    container: Container,
) -> None:
    spread = _queue(container, 10, "spread", "fal", "runware")

    assert _pipeline(container, fal=3, runware=4).dispatch() == 7

    assert _where(container, spread) == {"fal": 3, "runware": 4}


def test_a_failover_job_waits_for_its_busy_provider(container: Container) -> None:
    failover = _queue(container, 10, "failover", "fal", "runware")

    assert _pipeline(container, fal=3, runware=4).dispatch() == 3

    assert _where(container, failover) == {"fal": 3}


def test_spill_over_follows_each_job_s_own_order(container: Container) -> None:
    # Runflow-first jobs fill runflow, then go to fal (their second), never to runware.
    jobs = _queue(container, 6, "spread", "runflow", "fal")
    others = _queue(container, 6, "spread", "runware")

    assert _pipeline(container, fal=2, runware=1, runflow=2).dispatch() == 5

    assert _where(container, jobs) == {"runflow": 2, "fal": 2}
    assert _where(container, others) == {"runware": 1}


def test_cheapest_chooses_the_lowest_list_price_with_room(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(pricing.PRICE_PER_IMAGE, ("runflow", "flux-kontext-pro"), Decimal("0.03"))
    cheap = _queue(container, 5, "cheapest", "fal", "runflow")
    assert container.jobs("test").get(cheap[0]).job.providers == ("runflow", "fal")

    assert _pipeline(container, fal=5, runflow=3).dispatch() == 5

    # Runflow, the cheaper, is filled first; fal takes the rest.
    assert _where(container, cheap) == {"runflow": 3, "fal": 2}


def _status(container: Container, provider: str) -> ProviderStatus:
    return next(s for s in container.provider_status("test") if s.name == provider)


@pytest.fixture
def fal_with_account_limit(fal_emulator: RunningServer) -> Iterator[str]:
    config = f"{fal_emulator.url}/_emulator/config"
    httpx.patch(config, json={"account_limit": 2, "latency": 1.0, "jitter": 0.0})
    yield config
    httpx.patch(config, json={"account_limit": None, "latency": 0.15, "jitter": 0.05})


@pytest.mark.usefixtures("celery_worker", "scheduler_loop")
def test_a_429_cuts_the_learned_limit_at_once_and_accepted_work_grows_it_back(
    container: Container, fal_with_account_limit: str
) -> None:
    ceiling = _status(container, "fal").capacity
    start = _status(container, "fal").limit
    ids = _queue(container, 8, "spread", "fal")

    cut = wait_until(
        lambda: (s := _status(container, "fal")).limit < start and not s.slow_start and s,
        timeout=30,
        what="fal's limit to be cut",
    )
    assert cut.limit <= 0.9 * 8  # a share of what was in flight when fal said no
    done = [container.jobs("test").get(i) for i in ids]
    rate_limited = [
        e
        for d in done
        for e in d.events
        if e.transition == "requeue" and e.reason == "rate_limited"
    ]
    assert rate_limited, "fal answered 429 beyond its account limit"
    # Rate limits cost no attempt.
    assert all(d.job.failed_attempts == 0 for d in done)

    httpx.patch(fal_with_account_limit, json={"account_limit": None})
    more = _queue(container, 40, "spread", "fal")
    wait_until(
        lambda: all(
            container.jobs("test").get(i).job.state is JobState.SUCCEEDED for i in ids + more
        ),
        timeout=90,
        what="every job to succeed",
    )
    grown = _status(container, "fal")
    assert cut.limit < grown.limit <= ceiling


@pytest.mark.usefixtures("celery_worker", "scheduler_loop")
def test_a_reported_charge_is_kept_beside_the_list_price_and_counts_in_the_spend(
    container: Container,
) -> None:
    job, _ = container.jobs("test").create(job_request(providers=("runware",)))

    detail = wait_until(
        lambda: (d := container.jobs("test").get(job.id)).job.state is JobState.SUCCEEDED and d,
        timeout=30,
        what="the job to succeed",
    )

    [attempt] = detail_out(detail, container.storage, 60).attempts
    assert attempt.cost_reported and attempt.cost_usd == RUNWARE_REPORTED_COST
    assert attempt.list_price_usd == 0.04
    assert detail.job.cost_usd == Decimal(str(RUNWARE_REPORTED_COST))


@pytest.mark.parametrize(("latency", "slow_takes"), [({}, 5), ({"fal": 1.0, "runware": 3.0}, 4)])
def test_a_slower_provider_leaves_the_jobs_the_faster_would_finish_first(
    container: Container, latency: dict[str, float], slow_takes: int
) -> None:
    ids = _queue(container, 10, "spread", "fal", "runware")
    policy = container.policy()
    limits = dataclasses.replace(policy.limits, capacity={"fal": 2, "runware": 5})

    with container.database("test").transaction() as repo:
        claimed = dispatch(repo, limits, policy.lease_seconds, latency)

    # fal, twice as fast with 2 slots, finishes 2 x (3 - 1) / 1 = 4 jobs while runware does
    # one: runware leaves those 4 of the 8 waiting.
    assert len(claimed) == 2 + slow_takes
    assert _where(container, ids) == {"fal": 2, "runware": slow_takes}
