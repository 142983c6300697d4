"""An operator's controls on real PostgreSQL: pause and resume a provider, size it at runtime."""

from __future__ import annotations

import pytest

from models.state import JobState
from tests.integration.test_routing import _pipeline, _queue, _where
from worker.errors import ProviderControlInvalid, UnknownProvider
from worker.usecases.provider_status import ProviderStatus
from worker.wiring import Container

pytestmark = pytest.mark.integration


def status(container: Container, name: str) -> ProviderStatus:
    return next(s for s in container.provider_status("test") if s.name == name)


def test_a_paused_provider_is_sent_nothing_and_its_jobs_move_on_by_their_routing(
    container: Container,
) -> None:
    controls = container.provider_controls("ops:ana")
    reason = "fal degraded, see their status page"
    assert controls.pause("fal", reason)
    spread = _queue(container, 3, "spread", "fal", "runware")
    failover = _queue(container, 2, "failover", "fal", "runware")
    only_fal = _queue(container, 2, "spread", "fal")

    assert _pipeline(container, fal=10, runware=10).dispatch() == 5

    # Spread jobs spill to runware; failover jobs are handed on as by an open breaker; a
    # job that lists fal alone waits.
    assert _where(container, spread) == {"runware": 3}
    assert _where(container, failover) == {"runware": 2}
    assert {container.jobs("test").get(j).job.state for j in only_fal} == {JobState.QUEUED}
    paused = status(container, "fal")
    assert (paused.paused_by, paused.paused_reason) == (
        "ops:ana",
        "fal degraded, see their status page",
    )
    assert paused.limit == 0 and paused.paused_at is not None
    assert not controls.pause("fal", "again")  # paused already: nothing changes
    assert status(container, "fal").paused_reason == reason

    assert controls.resume("fal")
    assert _pipeline(container, fal=10, runware=10).dispatch() == 2
    assert _where(container, only_fal) == {"fal": 2}
    assert status(container, "fal").paused_at is None
    assert not controls.resume("fal")


def test_a_capacity_set_at_runtime_is_the_ceiling_until_reset(container: Container) -> None:
    controls = container.provider_controls("ops:ana")
    jobs = _queue(container, 10, "failover", "fal")
    controls.set_capacity("fal", 3)

    assert _pipeline(container, fal=8).dispatch() == 3
    shown = status(container, "fal")
    assert shown.capacity == 3 and shown.capacity_overridden

    controls.set_capacity("fal", None)
    assert _pipeline(container, fal=8).dispatch() == 5
    assert _where(container, jobs) == {"fal": 8}
    assert not status(container, "fal").capacity_overridden


@pytest.mark.parametrize(
    ("act", "error", "field"),
    [
        (lambda c: c.pause("fal", "  "), ProviderControlInvalid, "reason"),
        (lambda c: c.set_capacity("fal", 0), ProviderControlInvalid, "capacity"),
        (lambda c: c.set_capacity("fal", 10_001), ProviderControlInvalid, "capacity"),
        (lambda c: c.pause("replicate", "why"), UnknownProvider, "provider"),
    ],
    ids=["no reason", "zero", "too many", "unknown"],
)
def test_a_bad_control_is_refused_naming_its_field_and_changes_nothing(
    container: Container, act: object, error: type[Exception], field: str
) -> None:
    controls = container.provider_controls("ops:ana")
    with pytest.raises(error) as caught:
        act(controls)  # type: ignore[operator]
    assert str(caught.value).startswith(f"{field}:")
    fal = status(container, "fal")
    assert fal.paused_at is None and not fal.capacity_overridden
