"""Producer callbacks end to end: outbox rows, signed delivery, retries, the log, redelivery.

A real Celery worker and the scheduler's tick deliver to a real HTTP receiver that verifies
every request with the ``standardwebhooks`` library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from emulators.server import RunningServer, run_in_thread
from models.state import JobState
from models.tables import Callback, CallbackAttempt, Job
from tests.callback_receiver import CallbackReceiver, receiving
from tests.factories import job_body, job_request
from tests.integration.conftest import API_KEY, CALLBACK_SECRET
from tests.waiting import wait_until
from worker.api.app import create_app
from worker.database import Database
from worker.fetch import Fetcher
from worker.values.callback_events import (
    CallbackDetail,
    CallbackFilter,
    CallbackRecord,
    CallbackState,
)
from worker.values.chain import StepIn
from worker.wiring import Container

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}
delivering = pytest.mark.usefixtures("celery_worker", "scheduler_loop")


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    """A receiver that takes every callback at once."""
    with receiving(CALLBACK_SECRET) as r:
        yield r


@pytest.fixture
def client(container: Container) -> Iterator[httpx.Client]:
    """The API served over real HTTP, and a client for it."""
    with run_in_thread(create_app(container)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def _only_callback(container: Container, job_id: uuid.UUID) -> CallbackDetail | None:
    callbacks = container.callbacks("test")
    listed: Sequence[CallbackRecord | None] = callbacks.list(CallbackFilter(job_id=job_id))
    [callback] = listed or [None]
    return None if callback is None else callbacks.get(callback.id)


def _settled(container: Container, job_id: uuid.UUID) -> CallbackDetail | None:
    """The job's one callback, once it is delivered or given up."""
    detail = _only_callback(container, job_id)
    if detail is None or detail.callback.state is CallbackState.PENDING:
        return None
    return detail


def _without_urls(payload: dict[str, Any]) -> dict[str, Any]:
    def bare(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in o.items() if k != "url"} for o in outputs]

    data = payload["data"]
    steps = [{**s, "outputs": bare(s["outputs"])} for s in data["steps"]]
    return {**payload, "data": {**data, "outputs": bare(data["outputs"]), "steps": steps}}


def _wait_settled(container: Container, job_id: uuid.UUID, timeout: float = 30) -> CallbackDetail:
    return wait_until(
        lambda: _settled(container, job_id), timeout=timeout, what="the callback to settle"
    )


@delivering
def test_a_succeeded_job_sends_one_verified_job_succeeded_with_its_outputs(
    container: Container, client: httpx.Client, receiver: CallbackReceiver
) -> None:
    body = job_body(callback_url=receiver.url, external_id="SKU-7", metadata={"k": "v"})
    body["input"]["num_images"] = 2
    created = client.post("/v1/jobs", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    job_id = uuid.UUID(created.json()["id"])

    settled = _wait_settled(container, job_id)

    assert settled.callback.state is CallbackState.DELIVERED
    [payload] = receiver.assert_all_verified()
    [call] = receiver.calls()
    assert call.webhook_id == f"msg_{settled.callback.id.hex}"
    assert payload["type"] == "job.succeeded"
    data = payload["data"]
    assert data["id"] == str(job_id) and data["state"] == "succeeded"
    assert data["external_id"] == "SKU-7" and data["metadata"] == {"k": "v"}
    assert data["error"] is None and data["provider"] == "fal"
    job = container.jobs("test").get(job_id)
    assert [o["key"] for o in data["outputs"]] == [o.key for o in job.outputs]
    assert data["cost_usd"] == str(job.job.cost_usd)
    for sent in data["outputs"]:
        # The URL was presigned at send time and really serves the stored output.
        assert hashlib.sha256(httpx.get(sent["url"]).content).hexdigest() == sent["sha256"]
    assert [(t.status, t.error) for t in settled.tries] == [(200, None)]
    read = client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
    [shown] = read["callbacks"]
    assert shown["webhook_id"] == call.webhook_id and shown["state"] == "delivered"
    assert shown["event"] == "job.succeeded" and shown["attempts"] == 1


@delivering
def test_a_failed_job_sends_job_failed_with_its_error_code(
    container: Container, fal_emulator: RunningServer, receiver: CallbackReceiver
) -> None:
    httpx.patch(f"{fal_emulator.url}/_emulator/config", json={"rate_422": 1.0})
    try:
        job, _ = container.jobs("test").create(job_request(callback_url=receiver.url))
        settled = _wait_settled(container, job.id)
    finally:
        httpx.patch(f"{fal_emulator.url}/_emulator/config", json={"rate_422": 0.0})

    assert settled.callback.state is CallbackState.DELIVERED
    [payload] = receiver.assert_all_verified()
    assert payload["type"] == "job.failed" and payload["data"]["state"] == "failed"
    assert payload["data"]["error"]["code"] == "provider_validation"
    assert payload["data"]["outputs"] == []


@delivering
def test_a_canceled_job_sends_job_canceled(
    container: Container, receiver: CallbackReceiver
) -> None:
    jobs = container.jobs("test")
    job, _ = jobs.create(job_request(callback_url=receiver.url))
    jobs.cancel(job.id, "changed my mind")

    settled = _wait_settled(container, job.id)

    assert settled.callback.event == "job.canceled"
    [payload] = receiver.assert_all_verified()
    assert payload["type"] == "job.canceled" and payload["data"]["id"] == str(job.id)


@delivering
def test_a_receiver_that_fails_twice_gets_it_on_the_third_try_with_the_same_id(
    container: Container,
) -> None:
    with receiving(CALLBACK_SECRET, statuses=(500, 503)) as flaky:
        job, _ = container.jobs("test").create(job_request(callback_url=flaky.url))
        settled = _wait_settled(container, job.id)

    assert settled.callback.state is CallbackState.DELIVERED
    assert settled.callback.attempts == 3
    assert [t.status for t in settled.tries] == [500, 503, 200]
    assert settled.tries[0].error == "answered 500"
    # The same event each time; only the output URLs are presigned afresh.
    events = [_without_urls(p) for p in flaky.assert_all_verified()]
    assert len(events) == 3 and all(e == events[0] for e in events)
    assert {c.webhook_id for c in flaky.calls()} == {f"msg_{settled.callback.id.hex}"}


@delivering
def test_a_receiver_answering_410_gone_stops_the_callback_after_one_try(
    container: Container,
) -> None:
    with receiving(CALLBACK_SECRET, statuses=(410,)) as gone:
        job, _ = container.jobs("test").create(job_request(callback_url=gone.url))
        settled = _wait_settled(container, job.id)
        assert len(gone.assert_all_verified()) == 1

    assert settled.callback.state is CallbackState.FAILED
    assert settled.callback.last_status == 410
    assert [t.status for t in settled.tries] == [410]


@delivering
def test_a_callback_is_given_up_after_max_attempts(container: Container) -> None:
    tries = container.settings.callback_max_attempts
    with receiving(CALLBACK_SECRET, statuses=(503,) * 50) as down:
        job, _ = container.jobs("test").create(job_request(callback_url=down.url))
        settled = _wait_settled(container, job.id)

    assert settled.callback.state is CallbackState.FAILED
    assert settled.callback.attempts == tries and len(settled.tries) == tries
    assert {t.status for t in settled.tries} == {503}
    assert len(down.assert_all_verified()) == tries


@delivering
def test_an_unreachable_receiver_is_tried_again_and_its_error_logged(
    container: Container,
) -> None:
    with receiving(CALLBACK_SECRET) as gone_away:
        url = gone_away.url
    job, _ = container.jobs("test").create(job_request(callback_url=url))

    settled = _wait_settled(container, job.id)

    assert settled.callback.state is CallbackState.FAILED
    assert len(settled.tries) == container.settings.callback_max_attempts
    assert all(t.status is None and t.error and "ConnectError" in t.error for t in settled.tries)


def editq(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``editq <args>`` with the test environment (the container's)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@delivering
def test_cli_redeliver_sends_a_failed_callback_again_with_the_same_id(
    container: Container,
) -> None:
    with receiving(CALLBACK_SECRET, statuses=(410,)) as receiver:
        job, _ = container.jobs("test").create(job_request(callback_url=receiver.url))
        failed = _wait_settled(container, job.id)
        assert failed.callback.state is CallbackState.FAILED

        listed = editq("callbacks", "list", "--job", str(job.id), "--state", "failed")
        assert listed.returncode == 0, listed.stderr
        assert str(failed.callback.id) in listed.stdout and "127.0.0.1" in listed.stdout

        run = editq("callbacks", "redeliver", str(failed.callback.id))
        assert run.returncode == 0, run.stderr
        assert "redelivering 1 callback" in run.stdout

        settled = _wait_settled(container, job.id)
        payloads = receiver.assert_all_verified()

    assert settled.callback.state is CallbackState.DELIVERED
    assert settled.callback.attempts == 1  # a fresh budget
    assert [t.status for t in settled.tries] == [410, 200]  # the log keeps every try
    assert len(payloads) == 2 and _without_urls(payloads[0]) == _without_urls(payloads[1])
    assert {c.webhook_id for c in receiver.calls()} == {f"msg_{settled.callback.id.hex}"}
    shown = editq("callbacks", "show", str(settled.callback.id))
    assert shown.returncode == 0, shown.stderr
    assert "delivered" in shown.stdout and "410" in shown.stdout and "200" in shown.stdout


def test_cli_redeliver_refuses_no_filter_and_unknown_ids(container: Container) -> None:
    nothing = editq("callbacks", "redeliver")
    assert nothing.returncode == 2 and "invalid filter" in nothing.stderr

    unknown = uuid.uuid4()
    missing = editq("callbacks", "redeliver", str(unknown))
    assert missing.returncode == 3
    assert "callback_not_found" in missing.stderr and str(unknown) in missing.stderr
    assert editq("callbacks", "show", str(unknown)).returncode == 3


def test_the_outbox_writes_one_callback_per_ended_job_that_asked_for_one(
    container: Container,
) -> None:
    jobs = container.jobs("test")
    wanted = [jobs.create(job_request(callback_url="https://hooks.example.com/a"))[0].id]
    wanted.append(jobs.create(job_request(callback_url="https://hooks.example.com/b"))[0].id)
    silent = jobs.create(job_request())[0].id
    still_queued = jobs.create(job_request(callback_url="https://hooks.example.com/c"))[0].id

    with Database(container.sessions, "test").transaction() as repo:
        # As a bulk cancel does it: one statement for many jobs, then their callbacks.
        repo.s.execute(
            update(Job)
            .where(Job.id.in_([*wanted, silent]))
            .values(state=JobState.CANCELED, completed_at=Job.created_at)
        )
        written = repo.notify_jobs([*wanted, silent, still_queued])

    assert written == 2
    with container.engine.connect() as conn:
        rows = conn.execute(select(Callback.job_id, Callback.url, Callback.payload)).all()
    assert {r.job_id for r in rows} == set(wanted)
    assert {r.url for r in rows} == {"https://hooks.example.com/a", "https://hooks.example.com/b"}
    assert all(r.payload["type"] == "job.canceled" for r in rows)


def test_a_callback_to_a_private_address_is_refused_at_delivery(container: Container) -> None:
    job, _ = container.jobs("test").create(job_request(callback_url="http://127.0.0.1:9/hook"))
    container.jobs("test").cancel(job.id, "so that it has an event")
    strict = dataclasses.replace(
        container, fetcher=Fetcher(container.http, max_bytes=1024, allow_private=False)
    )
    [(callback_id, attempt)] = _due(container)

    verdict = strict.callbacks("test").deliver(callback_id, attempt)

    assert verdict == "failed"
    detail = container.callbacks("test").get(callback_id)
    [only] = detail.tries
    assert only.status is None and only.error and "non-public address" in only.error


def test_a_duplicate_delivery_message_makes_no_second_try(container: Container) -> None:
    job, _ = container.jobs("test").create(job_request(callback_url="http://127.0.0.1:9/hook"))
    container.jobs("test").cancel(job.id, "so that it has an event")
    [(callback_id, attempt)] = _due(container)
    callbacks = container.callbacks("test")

    assert callbacks.deliver(callback_id, attempt) == "retry"  # nothing listens on port 9
    assert callbacks.deliver(callback_id, attempt) == "stale"

    with container.engine.connect() as conn:
        tries = conn.execute(select(CallbackAttempt.id)).all()
    assert len(tries) == 1


def _due(container: Container) -> list[tuple[uuid.UUID, int]]:
    """What the tick would send now (no scheduler runs in these tests)."""
    with Database(container.sessions, "test").transaction() as repo:
        return repo.due_callbacks(10, 60)


@pytest.fixture
def unsigned_client(container: Container) -> Iterator[httpx.Client]:
    """The API of a server with no callback secret."""
    settings = container.settings.model_copy(update={"callback_secret": None})
    unsigned = dataclasses.replace(container, settings=settings)
    with run_in_thread(create_app(unsigned)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def _jobs(container: Container) -> int:
    with container.engine.connect() as conn:
        return len(conn.execute(select(Job.id)).all())


def test_without_a_secret_a_callback_url_is_refused_naming_the_field(
    container: Container, unsigned_client: httpx.Client
) -> None:
    body = job_body(callback_url="https://hooks.example.com/editq")
    answer = unsigned_client.post("/v1/jobs", json=body, headers=AUTH)

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "callbacks_not_configured"
    assert error["fields"][0]["field"] == "callback_url"
    assert "EDITQ_CALLBACK_SECRET" in error["message"]
    assert _jobs(container) == 0
    # A job without one is fine.
    assert unsigned_client.post("/v1/jobs", json=job_body(), headers=AUTH).status_code == 201


def test_a_callback_url_to_a_private_address_is_refused_outside_development(
    container: Container,
) -> None:
    strict = dataclasses.replace(
        container, fetcher=Fetcher(container.http, max_bytes=1024, allow_private=False)
    )
    with run_in_thread(create_app(strict)) as server, httpx.Client(base_url=server.url) as c:
        body = job_body(callback_url="http://10.0.0.7/hook")
        answer = c.post("/v1/jobs", json=body, headers=AUTH)

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "callback_url_refused"
    assert error["fields"][0] == {
        "field": "callback_url",
        "rule": "callback_url_refused",
        "message": error["fields"][0]["message"],
    }
    assert "10.0.0.7" in error["message"]
    assert _jobs(container) == 0


@delivering
def test_a_chain_that_asks_for_them_gets_an_event_per_step_and_every_step_in_the_last(
    container: Container, receiver: CallbackReceiver
) -> None:
    steps = (StepIn(prompt="Put it on a beach"), StepIn(prompt="Warm colour grade"))
    request = job_request(
        callback_url=receiver.url, steps=steps, callback_events=("job.step_succeeded",)
    )
    job, _ = container.jobs("test").create(request)

    def all_three() -> list[dict[str, Any]] | None:
        payloads = receiver.assert_all_verified()
        return payloads if len(payloads) == 3 else None

    payloads = wait_until(all_three, timeout=60, what="three callbacks")

    assert [p["type"] for p in payloads] == [
        "job.step_succeeded",
        "job.step_succeeded",
        "job.succeeded",
    ]
    assert [p["data"]["step"] for p in payloads[:2]] == [1, 2]
    assert [o["key"] for o in payloads[1]["data"]["outputs"]] == [f"outputs/{job.id}/steps/2/0.jpg"]
    last = payloads[2]["data"]
    assert [s["prompt"] for s in last["steps"]] == [
        request.input.prompt,
        "Put it on a beach",
        "Warm colour grade",
    ]
    for step in last["steps"]:
        (output,) = step["outputs"]
        assert hashlib.sha256(httpx.get(output["url"]).content).hexdigest() == output["sha256"]
    assert last["outputs"] == last["steps"][2]["outputs"]
