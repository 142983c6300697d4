"""End to end with webhooks, on each provider: real processes, callbacks, outputs byte for byte."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PROVIDERS, Running, sha256, start_stack
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance
each_provider = pytest.mark.parametrize("provider", PROVIDERS)


@pytest.fixture(scope="module")
def webhook_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=True)


@each_provider
def test_a_job_succeeds_by_webhook_with_the_providers_bytes(
    webhook_stack: Running, provider: str
) -> None:
    before = webhook_stack.stats(provider)
    job = webhook_stack.submit(provider, input={"output_format": "png"})

    done = webhook_stack.wait_terminal(job["id"])

    assert done["state"] == "succeeded", done["error"]
    assert done["provider"] == provider
    finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
    assert finalize["actor"] in {"webhook", "worker"}
    assert webhook_stack.stats(provider)["webhooks_sent"] > before["webhooks_sent"]
    [attempt] = done["attempts"]
    [original] = webhook_stack.provider_outputs(provider, attempt["request_id"])
    [output] = done["outputs"]
    stored = httpx.get(output["url"]).content  # the presigned GET from the API answer
    assert sha256(stored) == sha256(original) == output["sha256"]
    assert output["bytes"] == len(original) and output["content_type"] == "image/png"
    assert done["cost_usd"] == pytest.approx(0.04)


def test_webhooks_move_fal_and_runflow_jobs_on_without_a_poll(webhook_stack: Running) -> None:
    for provider in ("fal", "runflow"):
        done = webhook_stack.wait_terminal(webhook_stack.submit(provider)["id"])
        finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
        assert finalize["actor"] == "webhook", provider


def test_a_runware_callback_for_one_image_finishes_the_job_without_a_poll(
    webhook_stack: Running,
) -> None:
    # Runware does not sign its callbacks; the token in the URL proves them, and the one
    # callback of a one-image attempt carries the whole result.
    webhook_stack.faults("runware", latency=0.3)
    polls = webhook_stack.stats("runware")["polls"]
    done = webhook_stack.wait_terminal(webhook_stack.submit("runware")["id"])
    assert done["state"] == "succeeded"
    finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
    assert finalize["actor"] == "webhook"
    assert webhook_stack.stats("runware")["polls"] == polls


def test_runware_callbacks_for_several_images_wake_a_poll_that_confirms_them(
    webhook_stack: Running,
) -> None:
    # One callback per image: the first says only part is done, so the worker asks
    # getResponse for the whole at once.
    webhook_stack.faults("runware", latency=0.3)
    polls = webhook_stack.stats("runware")["polls"]
    job = webhook_stack.submit("runware", input={"num_images": 2})
    done = webhook_stack.wait_terminal(job["id"])
    assert done["state"] == "succeeded" and len(done["outputs"]) == 2
    finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
    assert finalize["actor"] == "worker"
    assert webhook_stack.stats("runware")["polls"] > polls


@each_provider
def test_a_webhook_delivered_three_times_finalizes_once(
    webhook_stack: Running, provider: str
) -> None:
    webhook_stack.faults(provider, webhook_duplicates=2)
    sent_before = webhook_stack.stats(provider)["webhooks_sent"]
    job = webhook_stack.submit(provider)

    done = webhook_stack.wait_terminal(job["id"])
    wait_until(
        lambda: webhook_stack.stats(provider)["webhooks_sent"] >= sent_before + 3,
        timeout=20,
        what="all three deliveries",
    )

    assert done["state"] == "succeeded"
    final = webhook_stack.job(job["id"])
    transitions = [e["transition"] for e in final["events"]]
    assert transitions.count("begin_finalize") == 1
    assert transitions.count("succeed") == 1
    assert len(final["outputs"]) == 1 and len(final["attempts"]) == 1


def _forgery(provider: str, attempt: dict[str, Any]) -> dict[str, Any]:
    """Everything a real callback for this attempt carries, but not the provider's proof."""
    request_id = attempt["request_id"]
    if provider == "fal":
        return {
            "params": {"attempt": attempt["id"]},
            "json": {
                "request_id": request_id,
                "status": "OK",
                "payload": {"images": [{"url": "http://evil/x.png"}]},
            },
            "headers": {
                "X-Fal-Webhook-Request-Id": request_id,
                "X-Fal-Webhook-User-Id": "someone",
                "X-Fal-Webhook-Timestamp": str(int(time.time())),
                "X-Fal-Webhook-Signature": "ab" * 64,
            },
        }
    if provider == "runflow":
        return {
            "json": {
                "event": "run.completed", "run_id": request_id, "status": "succeeded",
                "output": {"image_urls": ["http://evil/x.png"]},
                "metadata": {"editq_attempt": attempt["id"]},
            },
            "headers": {"Runflow-Signature": "ab" * 32},
        }  # fmt: skip
    return {
        "params": {"attempt": attempt["id"], "token": "0" * 64},
        "json": {
            "data": [
                {
                    "taskType": "imageInference",
                    "taskUUID": request_id,
                    "status": "success",
                    "imageURL": "http://evil/x.png",
                }
            ]
        },
    }


@each_provider
def test_a_forged_webhook_gets_401_and_changes_nothing(
    webhook_stack: Running, provider: str
) -> None:
    webhook_stack.faults(provider, latency=30)  # keep the real attempt running while we forge
    job = webhook_stack.submit(provider)
    running = wait_until(
        lambda: (j := webhook_stack.job(job["id"]))["state"] == "running" and j,
        what="job to be running",
    )
    [attempt] = running["attempts"]

    forged = webhook_stack.api.post(f"/v1/webhooks/{provider}", **_forgery(provider, attempt))

    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "webhook_signature_invalid"
    after = webhook_stack.job(job["id"])
    assert after["state"] == "running"
    assert after["events"] == running["events"] and after["outputs"] == []
    webhook_stack.api.post(f"/v1/jobs/{job['id']}/cancel")


@each_provider
def test_a_validation_error_fails_the_job_at_once_without_retry(
    webhook_stack: Running, provider: str
) -> None:
    webhook_stack.faults(provider, rate_422=1.0)
    before = webhook_stack.stats(provider)
    job = webhook_stack.submit(provider)

    done = webhook_stack.wait_terminal(job["id"])

    assert done["state"] == "failed"
    assert done["error"]["code"] == "provider_validation"
    assert len(done["attempts"]) == 1
    after = webhook_stack.stats(provider)
    assert after["rejected"] == before["rejected"] + 1
    assert after["accepted"] == before["accepted"]  # nothing was paid for


@each_provider
def test_a_503_is_retried_until_it_succeeds(webhook_stack: Running, provider: str) -> None:
    webhook_stack.faults(provider, rate_5xx=1.0)
    job = webhook_stack.submit(provider)
    wait_until(
        lambda: len(webhook_stack.job(job["id"])["attempts"]) >= 2,
        timeout=30,
        what="a second attempt after the 503",
    )
    webhook_stack.faults(provider, rate_5xx=0.0)

    done = webhook_stack.wait_terminal(job["id"])

    assert done["state"] == "succeeded"
    failed = [a for a in done["attempts"] if a["outcome"] == "failed"]
    assert failed and all(a["error"]["code"] == "provider_unavailable" for a in failed)
    assert done["attempts"][-1]["outcome"] == "succeeded"
    requeues = [e for e in done["events"] if e["transition"] == "requeue"]
    assert len(requeues) == len(failed)


def test_fal_signing_key_rotation_is_followed(webhook_stack: Running) -> None:
    rotated = webhook_stack.emulators["fal"].post("/_emulator/rotate-key")
    assert rotated.status_code == 200

    done = webhook_stack.wait_terminal(webhook_stack.submit("fal")["id"])

    assert done["state"] == "succeeded"
    finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
    assert finalize["actor"] == "webhook"  # signed with the new key, and verified


def test_a_replayed_runflow_callback_changes_nothing(webhook_stack: Running) -> None:
    done = webhook_stack.wait_terminal(webhook_stack.submit("runflow")["id"])
    [attempt] = done["attempts"]
    body = json.dumps(
        {
            "event": "run.completed",
            "run_id": attempt["request_id"],
            "status": "succeeded",
            "output": {"image_urls": ["http://127.0.0.1:9/elsewhere.png"]},
            "metadata": {"editq_attempt": attempt["id"]},
        }
    ).encode()
    secret = webhook_stack.stack.env["EDITQ_RUNFLOW_CALLBACK_SECRET"].encode()
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()

    replayed = webhook_stack.api.post(
        "/v1/webhooks/runflow", content=body, headers={"Runflow-Signature": signature}
    )

    # A genuine callback, late or repeated: acknowledged, and it moves nothing.
    assert replayed.status_code == 200
    assert replayed.json()["result"] == "duplicate"
    assert webhook_stack.job(done["id"]) == done


def test_no_secret_reaches_a_log(webhook_stack: Running) -> None:
    env = webhook_stack.stack.env
    secrets = [
        env[name]
        for name in (
            "EDITQ_API_KEYS",
            "FAL_KEY",
            "RUNWARE_API_KEY",
            "RUNFLOW_API_KEY",
            "EDITQ_RUNFLOW_CALLBACK_SECRET",
            "EDITQ_WEBHOOK_SECRET",
            "EDITQ_CALLBACK_SECRET",
            "AWS_SECRET_ACCESS_KEY",
        )
        if env.get(name)
    ]
    logs = "".join(
        p.read_text() for p in webhook_stack.stack.logs.glob("*.log") if "emulator" not in p.name
    )
    assert "/v1/webhooks/runware" in logs  # Runware's callbacks, with their tokens, were logged
    assert not re.search(r"token=(?!\*\*\*)", logs)
    assert not re.search(r"X-Amz-Signature=(?!\*\*\*)", logs)
    for secret in secrets:
        assert secret not in logs
