"""A cluster on one machine: two APIs, three workers and two schedulers on one PostgreSQL,
as on several hosts, and one of each killed with kill -9 mid-run."""

from __future__ import annotations

import json
import signal
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from models.state import JobState
from models.tables import Job
from tests.acceptance.conftest import API_KEY, PROVIDERS, Running
from tests.factories import job_body
from tests.faults.conftest import JOBS, assert_nothing_lost_or_paid_twice
from tests.waiting import wait_until
from worker.dev.services.home import choose_ports

pytestmark = pytest.mark.faults

#: Every process but the first of its kind serves no metrics: they would share a port.
NO_METRICS = {"EDITQ_WORKER_METRICS_PORT": "0", "EDITQ_SCHEDULER_METRICS_PORT": "0"}


def _schedulers(stack: Running) -> dict[str, Any]:
    shown = stack.editq("schedulers", "--json")
    assert shown.returncode == 0, shown.stderr
    seen: dict[str, Any] = json.loads(shown.stdout)
    return seen


def _leader_pid(stack: Running) -> int | None:
    seen = _schedulers(stack)
    leading = [s["pid"] for s in seen["schedulers"] if s["leads"]]
    return leading[0] if seen["leader"] and leading else None


def _succeeded(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(Job.state == JobState.SUCCEEDED)
        return int(conn.scalar(query) or 0)


def _submit(apis: list[httpx.Client], i: int) -> str:
    """Submit job ``i`` to one API; if that API is gone, the same request (same
    idempotency key) to the next, as a producer behind a load balancer retries."""
    body = job_body(providers=[PROVIDERS[(i + k) % 3] for k in range(3)])
    key = {"Idempotency-Key": f"cluster-{i}-{uuid.uuid4().hex[:6]}"}
    for api in apis[i % len(apis) :] + apis[: i % len(apis)]:
        try:
            answer = api.post("/v1/jobs", json=body, headers=key)
        except httpx.TransportError:
            continue
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["id"])
    raise AssertionError(f"no API took job {i}")


def _kill(stack: Running, name: str) -> None:
    """kill -9 a process of the stack, and forget it (it is not coming back)."""
    stack.stack.kill(name, signal.SIGKILL)
    stack.stack.procs.pop(name).wait(10)


def test_two_apis_three_workers_two_schedulers_one_of_each_killed_mid_run(
    stack: Running, engine: Engine
) -> None:
    (port,) = choose_ports(["api-2"], {}).values()
    stack.stack.start("api-2", ["api", "--port", str(port)], f"http://127.0.0.1:{port}/readyz")
    for name in ("worker-2", "worker-3"):
        stack.stack.start(name, ["worker", "--concurrency", "4"], env=NO_METRICS)
    stack.stack.start("scheduler-2", ["scheduler"], env=NO_METRICS)
    wait_until(lambda: len(_schedulers(stack)["schedulers"]) == 2, what="both schedulers")
    second = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    apis = [stack.api, second]

    jobs = [_submit(apis, i) for i in range(JOBS // 2)]
    wait_until(lambda: _succeeded(engine) >= JOBS // 8, timeout=120, what="progress")
    leader = _leader_pid(stack)
    pids = {name: proc.pid for name, proc in stack.stack.procs.items()}
    [leading] = [name for name, pid in pids.items() if pid == leader]
    for name in (leading, "api", "worker-2"):
        _kill(stack, name)
    jobs += [_submit(apis, i) for i in range(JOBS // 2, JOBS)]  # the survivors take them
    survivor = pids["scheduler-2" if leading == "scheduler" else "scheduler"]
    wait_until(lambda: _leader_pid(stack) == survivor, timeout=30, what="the takeover")

    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    second.close()
    assert states == {"succeeded": JOBS}
    with engine.connect() as conn:  # a request resent to the other API made no second job
        assert conn.scalar(select(func.count()).select_from(Job)) == len(set(jobs)) == JOBS
