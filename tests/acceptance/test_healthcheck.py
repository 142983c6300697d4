"""``editq healthcheck``: what a container's healthcheck runs, against the real processes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import Running, start_stack
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def health_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=False)


def test_a_live_worker_answers_and_a_killed_one_does_not(health_stack: Running) -> None:
    # The worker was started with the stack; it answers once it has connected.
    wait_until(
        lambda: health_stack.editq("healthcheck", "worker", "--timeout", "2").returncode == 0,
        timeout=60,
        what="the worker to answer its healthcheck",
    )
    health_stack.stack.kill("worker", signal.SIGKILL)
    health_stack.stack.procs["worker"].wait(10)
    try:
        dead = health_stack.editq("healthcheck", "worker", "--timeout", "2")
        assert dead.returncode == 1
        assert "no answer from celery@" in dead.stderr
    finally:
        health_stack.stack.start("worker", ["worker"])


def test_the_scheduler_heartbeat_is_fresh_while_it_ticks(
    health_stack: Running, tmp_path: Path
) -> None:
    beat = tmp_path / "scheduler.heartbeat"
    missing = health_stack.editq("healthcheck", "scheduler", "--heartbeat-file", str(beat))
    assert missing.returncode == 1 and "has not ticked" in missing.stderr
    health_stack.stack.start("beating", ["scheduler", "--heartbeat-file", str(beat)])
    try:
        wait_until(beat.exists, timeout=30, what="the scheduler's first tick")
        fresh = health_stack.editq("healthcheck", "scheduler", "--heartbeat-file", str(beat))
        assert fresh.returncode == 0, fresh.stderr
    finally:
        health_stack.stack.kill("beating", signal.SIGKILL)
    stale = health_stack.editq(
        "healthcheck", "scheduler", "--heartbeat-file", str(beat), "--max-age", "0"
    )
    assert stale.returncode == 1 and "last ticked" in stale.stderr
