"""Producer callbacks from the real processes: signed, verified, logged and listed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.acceptance.conftest import Running, sha256, start_stack
from tests.callback_receiver import CallbackReceiver, receiving
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance

#: A producer's own token in its callback URL: it must reach the receiver and no log.
PRODUCER_TOKEN = "producer-token-5f2d9c"


@pytest.fixture(scope="module")
def callback_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=True)


@pytest.fixture
def receiver(callback_stack: Running) -> Iterator[CallbackReceiver]:
    """A producer's endpoint, verifying with the secret the stack signs with."""
    with receiving(callback_stack.stack.env["EDITQ_CALLBACK_SECRET"]) as r:
        yield r


def _delivered(stack: Running, job_id: str) -> dict[str, object] | None:
    callbacks = stack.job(job_id, events=False)["callbacks"]
    done = [c for c in callbacks if c["state"] != "pending"]
    return done[0] if done else None


def test_a_job_with_a_callback_url_gets_a_verified_job_succeeded(
    callback_stack: Running, receiver: CallbackReceiver
) -> None:
    job = callback_stack.submit("fal", callback_url=f"{receiver.url}?token={PRODUCER_TOKEN}")
    done = callback_stack.wait_terminal(job["id"])
    assert done["state"] == "succeeded", done["error"]

    shown = wait_until(
        lambda: _delivered(callback_stack, job["id"]), timeout=30, what="the callback"
    )

    assert shown["state"] == "delivered" and shown["event"] == "job.succeeded"
    [payload] = receiver.assert_all_verified()
    [call] = receiver.calls()
    assert call.webhook_id == shown["webhook_id"]
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    [output] = payload["data"]["outputs"]
    assert output["key"] == done["outputs"][0]["key"]
    assert sha256(httpx.get(output["url"]).content) == output["sha256"]


def test_a_job_that_fails_gets_a_verified_job_failed(
    callback_stack: Running, receiver: CallbackReceiver
) -> None:
    callback_stack.faults("runflow", rate_422=1.0)
    try:
        job = callback_stack.submit("runflow", callback_url=receiver.url)
        assert callback_stack.wait_terminal(job["id"])["state"] == "failed"
        wait_until(lambda: _delivered(callback_stack, job["id"]), timeout=30, what="callback")
    finally:
        callback_stack.faults("runflow", rate_422=0.0)

    [payload] = receiver.assert_all_verified()
    assert payload["type"] == "job.failed"
    assert payload["data"]["error"]["code"] == "provider_validation"


def test_ops_list_callbacks_and_no_secret_reaches_a_log(
    callback_stack: Running, receiver: CallbackReceiver
) -> None:
    job = callback_stack.submit("runware", callback_url=f"{receiver.url}?token={PRODUCER_TOKEN}")
    callback_stack.wait_terminal(job["id"])
    wait_until(lambda: _delivered(callback_stack, job["id"]), timeout=30, what="callback")
    assert receiver.assert_all_verified()

    listed = callback_stack.editq("callbacks", "list", "--job", job["id"])
    assert listed.returncode == 0, listed.stderr
    assert "job.succeeded" in listed.stdout and "delivered" in listed.stdout

    logs = "".join(p.read_text() for p in callback_stack.stack.logs.glob("*.log"))
    assert "job.succeeded to 127.0.0.1: try 1 answered 200" in logs  # each try is logged...
    assert callback_stack.stack.env["EDITQ_CALLBACK_SECRET"] not in logs
    assert PRODUCER_TOKEN not in logs  # ...by host, never by its full URL
