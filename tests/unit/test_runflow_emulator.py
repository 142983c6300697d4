"""The Runflow emulator over real HTTP: runs, validation, faults, callbacks, files and admin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any, get_args

import httpx
import pytest
from fastapi import FastAPI, Response
from PIL import Image

from emulators.faults import WebhookPolicy
from emulators.imaging import ASPECT_RATIOS
from emulators.runflow import RunflowEmulatorConfig, create_app
from emulators.runflow.protocol import AspectRatio
from emulators.server import RunningServer
from tests.emulator_support import Receiver, server_pool
from tests.waiting import wait_until

MODEL = "black-forest-labs/flux-pro/kontext"
AUTH = {"Authorization": "Bearer rf_live_test"}
SECRET = "whsec_emulator-test-secret"
# Fast enough for a unit suite, slow enough that queued and running can be observed.
FAST = {"latency": 0.15, "jitter": 0.02, "seed": 1, "callback_secret": SECRET}
ENDED = {"succeeded", "failed"}


def source_uri(payload: bytes | None = None) -> str:
    """A data URI holding a small PNG (or ``payload``, to send something that is not one)."""
    if payload is None:
        buffer = io.BytesIO()
        Image.linear_gradient("L").resize((160, 120)).convert("RGB").save(buffer, format="PNG")
        payload = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(payload).decode()


def sign(secret: str, body: bytes) -> str:
    """What a Runflow receiver computes: hex HMAC-SHA256 of the raw body, keyed by the secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start servers for the test, stopped at its end: emulators from config options, or apps."""
    with server_pool(
        lambda **options: create_app(RunflowEmulatorConfig(**{**FAST, **options}))
    ) as start:
        yield start


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, timeout=10.0) as client:
        yield client


def create(http: httpx.Client, server: RunningServer, **changes: Any) -> httpx.Response:
    """Create a run; ``changes`` set input fields, or top-level ones when named so."""
    top: dict[str, Any] = {
        key: changes.pop(key)
        for key in ("callback_url", "metadata", "client_ref")
        if key in changes
    }
    body = {"input": {"prompt": "paint it teal", "image_url": source_uri(), **changes}, **top}
    return http.post(f"{server.url}/v1/models/{MODEL}/runs", json=body)


def wait_ended(http: httpx.Client, server: RunningServer, run_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = http.get(f"{server.url}/v1/runs/{run_id}").json()
        return run if run["status_code"] in ENDED else None

    return wait_until(ended, timeout=10, interval=0.01, what=f"run {run_id} to end")


def stats(server: RunningServer) -> dict[str, int]:
    result: dict[str, int] = httpx.get(f"{server.url}/_emulator/stats").json()
    return result


def test_a_run_goes_through_its_states_to_a_served_image(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(latency=0.3)

    created = create(http, server, output_format="png", aspect_ratio="1:1", client_ref="ref-1")

    assert created.status_code == 201
    run = created.json()
    assert (run["status_code"], run["status"], run["client_ref"]) == ("queued", "queued", "ref-1")
    assert uuid.UUID(run["id"]).version == 7
    assert run["input"] == {
        "prompt": "paint it teal",
        "image_url": source_uri(),
        "output_format": "png",
        "aspect_ratio": "1:1",
    }
    assert run["created_at"].endswith("+00:00")
    url = f"{server.url}/v1/runs/{run['id']}"

    def running() -> bool:
        return bool(http.get(url).json()["status_code"] == "running")

    wait_until(running, timeout=10, interval=0.01, what="the run to be running")
    ended = wait_ended(http, server, run["id"])
    assert (ended["status_code"], ended["cost"], ended["failure_code"]) == (
        "succeeded",
        "0.04",
        None,
    )
    assert ended["duration_ms"] >= 250
    [image_url] = ended["output"]["image_urls"]
    assert "X-Amz-Signature=" in image_url
    served = httpx.get(image_url)
    assert (served.status_code, served.headers["content-type"]) == (200, "image/png")
    assert Image.open(io.BytesIO(served.content)).size == (120, 120)
    [listed] = http.get(f"{server.url}/_emulator/requests").json()
    path = [step["status"] for step in listed["history"]]
    assert path == ["queued", "dispatching", "running", "succeeded"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": None}, "input.prompt"),
        ({"image_url": None}, "input.image_url"),
        ({"aspect_ratio": "5:4"}, "input.aspect_ratio"),
        ({"num_images": 5}, "input.num_images"),
        ({"guidance_scale": 25}, "input.guidance_scale"),
        ({"output_format": "webp"}, "input.output_format"),
        ({"safety_tolerance": 2}, "input.safety_tolerance"),
        ({"seed": "abc"}, "input.seed"),
        ({"enhance_prompt": "maybe"}, "input.enhance_prompt"),
        ({"callback_url": "ftp://x"}, "callback_url"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(
    serve: Callable[..., RunningServer], http: httpx.Client, change: dict[str, Any], field: str
) -> None:
    server = serve()
    body: dict[str, Any] = {"input": {"prompt": "p", "image_url": source_uri()}}
    for key, value in change.items():
        target = body if key == "callback_url" else body["input"]
        target[key] = value
        if value is None:
            del target[key]

    reply = http.post(f"{server.url}/v1/models/{MODEL}/runs", json=body)

    assert reply.status_code == 422
    refused = reply.json()
    assert (refused["code"], refused["message"]) == (
        "VALIDATION_ERROR",
        "Request validation failed",
    )
    [error] = refused["errors"]
    assert error["field"] == field
    assert error["message"]
    assert http.get(f"{server.url}/_emulator/requests").json() == []


def test_a_body_that_is_not_json_is_a_bad_request(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    reply = http.post(f"{server.url}/v1/models/{MODEL}/runs", content=b"{not json")
    assert (reply.status_code, reply.json()["code"]) == (400, "BAD_REQUEST")


def test_calls_without_a_valid_bearer_key_are_refused(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(api_key="rf_live_test")
    url = f"{server.url}/v1/models/{MODEL}/runs"
    body = {"input": {"prompt": "p", "image_url": source_uri()}}

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Key rf_live_test"}):
        refused = httpx.post(url, json=body, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, "UNAUTHORIZED")
    accepted = http.post(url, json=body)
    assert accepted.status_code == 201
    assert httpx.get(f"{server.url}/v1/runs/{accepted.json()['id']}").status_code == 401
    assert httpx.post(f"{server.url}/v1/callback-secrets").status_code == 401
    assert stats(server)["rejected"] == 3


def test_any_bearer_key_is_accepted_when_none_is_configured(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve()
    with httpx.Client(headers={"Authorization": "Bearer anything"}) as client:
        assert create(client, server).status_code == 201


def test_unknown_runs_and_models_answer_runflows_404s(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    missing = http.get(f"{server.url}/v1/runs/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["code"]) == (404, "RUN_NOT_FOUND")
    model = http.post(f"{server.url}/v1/models/acme/other/runs", json={})
    assert (model.status_code, model.json()["code"]) == (404, "MODEL_NOT_FOUND")
    route = http.get(f"{server.url}/v1/nowhere")
    assert (route.status_code, route.json()["code"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("fault", "status_code", "code"),
    [
        ("rate_5xx", 503, "MODEL_UNAVAILABLE"),
        ("rate_429", 429, "RATE_LIMITED"),
        ("rate_422", 422, "VALIDATION_ERROR"),
    ],
)
def test_injected_create_faults_answer_runflows_error_envelope(
    serve: Callable[..., RunningServer],
    http: httpx.Client,
    fault: str,
    status_code: int,
    code: str,
) -> None:
    server = serve(**{fault: 1.0, "retry_after": 3})

    reply = create(http, server)

    assert (reply.status_code, reply.json()["code"]) == (status_code, code)
    assert reply.json()["message"]
    assert (reply.headers.get("retry-after") == "3") == (status_code == 429)
    assert http.get(f"{server.url}/_emulator/requests").json() == []
    assert stats(server)["rejected"] == 1


def test_a_moderated_run_fails_with_runflows_failure_fields(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(rate_moderated=1.0)

    ended = wait_ended(http, server, create(http, server).json()["id"])

    assert ended["status_code"] == "failed"
    assert (ended["failure_code"], ended["failure_stage"]) == ("CONTENT_MODERATED", "postprocess")
    assert ended["failure_message"]
    assert (ended["output"], ended["cost"]) == (None, None)
    assert stats(server)["failed"] == 1


@pytest.mark.parametrize(
    ("image_url", "failure_code"),
    [
        (source_uri(b"this is not an image"), "IMAGE_DECODE_FAILED"),
        ("data:image/png;base64,@@@", "INPUT_DOWNLOAD_FAILED"),
        ("ftp://example.invalid/a.png", "INPUT_DOWNLOAD_FAILED"),
    ],
    ids=["not an image", "bad data uri", "unsupported scheme"],
)
def test_an_unusable_source_fails_the_run_in_preprocess(
    serve: Callable[..., RunningServer], http: httpx.Client, image_url: str, failure_code: str
) -> None:
    server = serve()
    ended = wait_ended(http, server, create(http, server, image_url=image_url).json()["id"])
    assert (ended["failure_code"], ended["failure_stage"]) == (failure_code, "preprocess")


def test_the_admin_listing_shows_the_hash_of_the_source_as_downloaded(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").save(buffer, format="PNG")
    png = buffer.getvalue()
    files = FastAPI()
    files.get("/source.png")(lambda: Response(png, media_type="image/png"))
    origin = serve(files)
    server = serve()
    text = b"this is not an image"

    found = create(http, server, image_url=f"{origin.url}/source.png").json()["id"]
    unreadable = create(http, server, image_url=source_uri(text)).json()["id"]
    missing = create(http, server, image_url=f"{origin.url}/missing.png").json()["id"]
    for run_id in (found, unreadable, missing):
        wait_ended(http, server, run_id)

    listed = {
        run["id"]: run["source_sha256"]
        for run in http.get(f"{server.url}/_emulator/requests").json()
    }
    assert listed == {
        found: hashlib.sha256(png).hexdigest(),
        unreadable: hashlib.sha256(text).hexdigest(),
        missing: None,
    }


def test_runs_beyond_the_concurrency_limit_stay_queued_until_admitted(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(concurrency=1, latency=5.0, jitter=0.0)
    first, second = (create(http, server).json()["id"] for _ in range(2))
    first_url, second_url = (f"{server.url}/v1/runs/{run_id}" for run_id in (first, second))
    wait_until(lambda: http.get(first_url).json()["status_code"] == "running", what="first")

    assert http.get(second_url).json()["status_code"] == "queued"
    patched = http.patch(f"{server.url}/_emulator/config", json={"concurrency": 2})

    assert patched.json()["concurrency"] == 2
    wait_until(lambda: http.get(second_url).json()["status_code"] == "running", what="second")


def test_output_urls_are_signed_and_expire(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    # Long enough that a busy machine still reads it in time; short enough to watch expire.
    server = serve(result_ttl=5.0)
    ended = wait_ended(http, server, create(http, server).json()["id"])
    [url] = ended["output"]["image_urls"]

    assert httpx.get(url).status_code == 200
    tampered = httpx.get(url.replace("X-Amz-Expires=5", "X-Amz-Expires=9999"))
    assert tampered.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in tampered.text
    wait_until(lambda: httpx.get(url).status_code == 403, timeout=20, what="the URL to expire")
    assert "Request has expired" in httpx.get(url).text


def test_sync_mode_returns_data_uris_and_num_images_gives_several(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    ended = wait_ended(
        http, server, create(http, server, sync_mode=True, num_images=2).json()["id"]
    )

    urls = ended["output"]["image_urls"]
    assert ended["cost"] == "0.08"
    assert len(urls) == 2
    assert urls[0] != urls[1]
    assert all(url.startswith("data:image/jpeg;base64,") for url in urls)
    Image.open(io.BytesIO(base64.b64decode(urls[0].partition(",")[2]))).verify()


def unsigned(output: dict[str, Any]) -> dict[str, Any]:
    """A run's output with each image URL's query string (its signature) dropped."""
    return {**output, "image_urls": [u.split("?", 1)[0] for u in output["image_urls"]]}


def test_a_callback_is_signed_and_retried_after_a_failed_delivery(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver(statuses=(500,))
    hook = serve(receiver.app)
    server = serve(webhook=WebhookPolicy(retry_delays=(0.05, 0.05)))
    metadata = {"editq_attempt": "0b5c8e5e-3f4d-4d8a-9a53-7c1f4f0e2a11"}

    run_id = create(http, server, callback_url=f"{hook.url}/hook", metadata=metadata).json()["id"]

    wait_until(lambda: len(receiver.calls) == 2, timeout=10, what="the retried callback")
    (first_headers, first), (headers, raw) = receiver.calls
    assert first == raw
    assert headers["runflow-signature"] == sign(SECRET, raw)
    assert headers["runflow-signature"] != sign(SECRET, raw + b" ")
    assert headers["runflow-request-id"] == first_headers["runflow-request-id"]
    body = json.loads(raw)
    assert (body["event"], body["run_id"], body["status"]) == ("run.completed", run_id, "succeeded")
    assert body["metadata"] == metadata
    # The same outputs; their URLs are presigned at each answer, so compared without that.
    shown = http.get(f"{server.url}/v1/runs/{run_id}").json()["output"]
    assert unsigned(body["output"]) == unsigned(shown)
    assert body["completed_at"].endswith("+00:00")
    wait_until(lambda: stats(server)["webhooks_sent"] == 1, what="the delivery count")
    assert stats(server)["webhook_failures"] == 1
    [delivery] = http.get(f"{server.url}/v1/runs/{run_id}/callback").json()
    assert (delivery["status_code"], delivery["attempt_count"], delivery["max_attempts"]) == (
        "succeeded",
        2,
        3,
    )
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert delivery["payload_bytes"] == raw.decode()


def test_a_failed_run_calls_back_with_an_error_envelope(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(rate_moderated=1.0)

    create(http, server, callback_url=f"{hook.url}/hook")

    _, raw = wait_until(lambda: receiver.calls, timeout=10, what="the callback")[0]
    body = json.loads(raw)
    assert (body["event"], body["status"]) == ("run.failed", "failed")
    assert (body["output"]["code"], body["output"]["stage"]) == ("CONTENT_MODERATED", "postprocess")


def test_callbacks_can_be_dropped_and_duplicated_on_purpose(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(webhook=WebhookPolicy(duplicates=2))
    create(http, server, callback_url=f"{hook.url}/hook")
    wait_until(lambda: len(receiver.calls) == 3, timeout=10, what="the callback and duplicates")
    assert len({raw for _, raw in receiver.calls}) == 1

    http.patch(f"{server.url}/_emulator/config", json={"webhook_drop_rate": 1.0})
    dropped = create(http, server, callback_url=f"{hook.url}/hook").json()["id"]
    wait_until(lambda: stats(server)["webhooks_dropped"] == 1, timeout=10, what="the drop")
    [delivery] = http.get(f"{server.url}/v1/runs/{dropped}/callback").json()
    assert (delivery["status_code"], delivery["failure_reason_code"]) == ("failed", "DROPPED")
    assert len(receiver.calls) == 3


def test_a_callback_can_be_redelivered_once_the_run_has_ended(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(latency=0.5)
    run_id = create(http, server, callback_url=f"{hook.url}/hook").json()["id"]
    redeliveries = f"{server.url}/v1/runs/{run_id}/callback-redeliveries"
    assert http.post(redeliveries).json()["code"] == "CONFLICT"  # still queued or running
    wait_until(lambda: receiver.calls, timeout=10, what="the callback")

    redelivery = http.post(redeliveries)

    assert redelivery.status_code == 201
    assert redelivery.json()["is_automatic"] is False
    wait_until(lambda: len(receiver.calls) == 2, timeout=10, what="the redelivery")
    assert receiver.calls[0][1] == receiver.calls[1][1]
    deliveries = http.get(f"{server.url}/v1/runs/{run_id}/callback").json()
    assert [d["is_automatic"] for d in deliveries] == [True, False]
    silent = create(http, server).json()["id"]
    wait_ended(http, server, silent)
    refused = http.post(f"{server.url}/v1/runs/{silent}/callback-redeliveries")
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (422, "callback_url")


def test_a_new_callback_secret_signs_callbacks_from_then_on(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve()

    issued = http.post(f"{server.url}/v1/callback-secrets", json={"label": "production"})
    create(http, server, callback_url=f"{hook.url}/hook")

    assert issued.status_code == 201
    secret = issued.json()
    assert secret["plain_secret"].startswith("whsec_")
    assert (secret["label"], secret["is_current"]) == ("production", True)
    headers, raw = wait_until(lambda: receiver.calls, timeout=10, what="the callback")[0]
    assert headers["runflow-signature"] == sign(secret["plain_secret"], raw)
    assert headers["runflow-signature"] != sign(SECRET, raw)
    assert stats(server)["secrets_created"] == 1


def test_admin_counts_and_lists_every_accepted_run(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    accepted = [create(http, server).json()["id"] for _ in range(2)]
    create(http, server, prompt="")
    for run_id in accepted:
        wait_ended(http, server, run_id)

    listed = http.get(f"{server.url}/_emulator/requests").json()

    assert [run["id"] for run in listed] == accepted
    assert all(run["status"] == "succeeded" for run in listed)
    counted = stats(server)
    assert {key: counted[key] for key in ("accepted", "rejected", "completed", "failed")} == {
        "accepted": 2,
        "rejected": 1,
        "completed": 2,
        "failed": 0,
    }
    config_url = f"{server.url}/_emulator/config"
    assert http.patch(config_url, json={"rate_429": 2.0}).status_code == 422
    assert http.patch(config_url, json={"colour": "red"}).status_code == 422


def test_the_aspect_ratio_lists_agree() -> None:
    assert set(get_args(AspectRatio)) == set(ASPECT_RATIOS)
