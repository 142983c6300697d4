"""Failover: when one provider fails everything, its breaker opens and the others finish."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.acceptance.conftest import Running, start_stack
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance
JOBS = 30
FIRST_WAVE = 5
THRESHOLD = 3


@pytest.fixture(scope="module")
def storm_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    settings = {
        "EDITQ_PROVIDERS": "fal,runware,runflow",
        "EDITQ_BREAKER_FAILURES": str(THRESHOLD),
        # Long enough that the breaker stays open for the whole test.
        "EDITQ_BREAKER_COOLDOWN_SECONDS": "300",
    }
    yield from start_stack(
        test_env, tmp_path_factory.mktemp("logs"), webhooks=True, extra_env=settings
    )


def test_a_provider_answering_503_to_everything_is_routed_around(storm_stack: Running) -> None:
    storm_stack.faults("fal", rate_5xx=1.0)
    listed = ["fal", "runware", "runflow"]
    # A first wave reaches fal and fails there; its failures open the breaker.
    first = [storm_stack.submit(providers=listed) for _ in range(FIRST_WAVE)]
    wait_until(lambda: _breaker(storm_stack, "fal") == "open", timeout=30, what="fal's breaker")
    rejected_when_open = storm_stack.stats("fal")["rejected"]
    # Everything after that goes straight to the other two.
    second = [storm_stack.submit(providers=listed) for _ in range(JOBS - FIRST_WAVE)]

    done = [storm_stack.wait_terminal(job["id"], timeout=90) for job in first + second]

    assert [j["state"] for j in done] == ["succeeded"] * JOBS
    assert {j["provider"] for j in done} <= {"runware", "runflow"}
    fal = storm_stack.stats("fal")
    assert fal["accepted"] == 0  # nothing was ever paid for at fal
    assert rejected_when_open >= THRESHOLD
    # Only the first wave ever reached fal (a job claimed just before the breaker opened
    # may land after it did); the open breaker kept the whole second wave away.
    assert fal["rejected"] <= FIRST_WAVE
    for job in done[FIRST_WAVE:]:
        assert all(a["provider"] != "fal" for a in job["attempts"])
    failed = [a for j in done for a in j["attempts"] if a["outcome"] == "failed"]
    assert {a["provider"] for a in failed} == {"fal"}
    assert {a["error"]["code"] for a in failed} == {"provider_unavailable"}
    assert _breaker(storm_stack, "fal") == "open"
    assert _breaker(storm_stack, "runware") == _breaker(storm_stack, "runflow") == "closed"
    # Each job was paid for once, on one of the two healthy providers.
    assert sum(storm_stack.stats(p)["accepted"] for p in ("runware", "runflow")) == JOBS


def _breaker(stack: Running, provider: str) -> str:
    health = stack.api.get("/v1/providers").json()
    state: str = next(p for p in health if p["name"] == provider)["breaker"]
    return state
