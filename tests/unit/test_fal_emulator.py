"""The fal emulator over real HTTP: fal's queue protocol, faults, webhooks, files and admin."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, get_args

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Response
from PIL import Image

from emulators.fal import FalEmulatorConfig, create_app
from emulators.fal.protocol import AspectRatio
from emulators.faults import FaultInjector, SubmitFault, WebhookPolicy
from emulators.imaging import ASPECT_RATIOS
from emulators.server import RunningServer
from tests.emulator_support import Receiver, server_pool
from tests.waiting import wait_until

T = TypeVar("T")
KONTEXT = "fal-ai/flux-pro/kontext"
AUTH = {"Authorization": "Key test-key"}
# Fast enough for a unit suite, slow enough that IN_QUEUE and IN_PROGRESS can be observed.
FAST = {"latency": 0.15, "jitter": 0.02, "seed": 1}


def source_uri(payload: bytes | None = None) -> str:
    """A data URI holding a small PNG (or ``payload``, to send something that is not one)."""
    if payload is None:
        buffer = io.BytesIO()
        Image.linear_gradient("L").resize((160, 120)).convert("RGB").save(buffer, format="PNG")
        payload = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(payload).decode()


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy, failing after ``timeout`` seconds."""
    return wait_until(check, timeout=timeout, interval=0.01, what=what)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start servers for the test, stopped at its end: emulators from config options, or apps."""
    with server_pool(
        lambda **options: create_app(FalEmulatorConfig(**{**FAST, **options}))
    ) as start:
        yield start


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, timeout=10.0) as client:
        yield client


def submit(http: httpx.Client, server: RunningServer, **arguments: Any) -> httpx.Response:
    params = arguments.pop("params", None)
    body = {"prompt": "paint it teal", "image_url": source_uri(), **arguments}
    return http.post(f"{server.url}/{KONTEXT}", json=body, params=params)


def wait_completed(http: httpx.Client, submitted: httpx.Response) -> dict[str, Any]:
    status_url = submitted.json()["status_url"]

    def completed() -> dict[str, Any] | None:
        reply = http.get(status_url)
        return reply.json() if reply.status_code == 200 else None

    return wait_for(completed, "COMPLETED")


def verifying_kid(jwks: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> str:
    """The id of the published key that verifies a webhook, checked as a fal receiver would."""
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    ).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for key in jwks["keys"]:
        assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
        raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except InvalidSignature:
            continue
        return str(key["kid"])
    raise AssertionError("no published key verifies the webhook signature")


def test_a_request_goes_through_the_queue_to_an_edited_image(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(latency=0.3)

    submitted = submit(http, server, output_format="png", aspect_ratio="1:1")

    assert submitted.status_code == 200
    body = submitted.json()
    assert body["status"] == "IN_QUEUE"
    assert body["queue_position"] == 0
    first = http.get(body["status_url"])
    assert first.status_code == 202
    assert first.json()["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    wait_for(lambda: http.get(body["status_url"]).json()["status"] == "IN_PROGRESS", "running")
    early = http.get(body["response_url"])
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})
    completed = wait_completed(http, submitted)
    assert completed["status"] == "COMPLETED"
    assert completed["metrics"]["inference_time"] >= 0.25
    assert "error" not in completed
    result = http.get(body["response_url"])
    assert result.status_code == 200
    output = result.json()
    assert output["prompt"] == "paint it teal"
    assert output["has_nsfw_concepts"] == [False]
    assert isinstance(output["seed"], int)
    assert output["timings"]["inference"] > 0
    [image] = output["images"]
    assert image["content_type"] == "image/png"
    assert image["file_name"].endswith(".png")
    served = httpx.get(image["url"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert len(served.content) == image["file_size"]
    decoded = Image.open(io.BytesIO(served.content))
    assert decoded.size == (image["width"], image["height"]) == (120, 120)


def test_queue_urls_drop_the_endpoint_subpath(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()

    body = http.post(
        f"{server.url}/{KONTEXT}/max", json={"prompt": "p", "image_url": source_uri()}
    ).json()

    base = f"{server.url}/fal-ai/flux-pro/requests/{body['request_id']}"
    assert body["response_url"] == base
    assert body["status_url"] == f"{base}/status"
    assert body["cancel_url"] == f"{base}/cancel"
    with_subpath = f"{server.url}/{KONTEXT}/requests/{body['request_id']}/status"
    assert http.get(with_subpath).status_code == 404
    assert http.get(f"{server.url}/fal-ai/flux-pro/requests/unknown/status").status_code == 404


def test_calls_without_a_valid_key_are_refused(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(api_key="test-key")
    url = f"{server.url}/{KONTEXT}"
    body = {"prompt": "p", "image_url": source_uri()}

    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Key wrong"}).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer x"}).status_code == 401
    accepted = http.post(url, json=body)
    assert accepted.status_code == 200
    assert httpx.get(accepted.json()["status_url"]).status_code == 401
    assert httpx.get(f"{server.url}/_emulator/stats").json()["rejected"] == 3


def test_any_key_is_accepted_when_none_is_configured(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve()
    body = {"prompt": "p", "image_url": source_uri()}

    accepted = httpx.post(f"{server.url}/{KONTEXT}", json=body, headers={"Authorization": "Key z"})

    assert accepted.status_code == 200
    assert httpx.post(f"{server.url}/{KONTEXT}", json=body).status_code == 401


@pytest.mark.parametrize(
    ("change", "field", "error_type"),
    [
        ({"prompt": None}, "prompt", "missing"),
        ({"image_url": None}, "image_url", "missing"),
        ({"safety_tolerance": 2}, "safety_tolerance", "literal_error"),
        ({"guidance_scale": 25}, "guidance_scale", "less_than_equal"),
        ({"num_images": 5}, "num_images", "less_than_equal"),
        ({"output_format": "webp"}, "output_format", "literal_error"),
        ({"aspect_ratio": "5:4"}, "aspect_ratio", "literal_error"),
        ({"seed": "abc"}, "seed", "int_parsing"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(
    serve: Callable[..., RunningServer],
    http: httpx.Client,
    change: dict[str, Any],
    field: str,
    error_type: str,
) -> None:
    server = serve()
    body = {"prompt": "p", "image_url": source_uri(), **change}

    reply = http.post(
        f"{server.url}/{KONTEXT}", json={k: v for k, v in body.items() if v is not None}
    )

    assert reply.status_code == 422
    [detail] = reply.json()["detail"]
    assert detail["loc"] == ["body", field]
    assert detail["type"] == error_type
    assert detail["msg"]
    assert http.get(f"{server.url}/_emulator/requests").json() == []


def test_a_body_that_is_not_json_is_refused(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()

    reply = http.post(f"{server.url}/{KONTEXT}", content=b"{not json")

    assert reply.status_code == 422
    assert reply.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("fault", "status_code"), [("rate_5xx", 503), ("rate_429", 429), ("rate_422", 422)]
)
def test_injected_submit_faults_answer_fals_error_bodies(
    serve: Callable[..., RunningServer], http: httpx.Client, fault: str, status_code: int
) -> None:
    server = serve(**{fault: 1.0, "retry_after": 3})

    reply = submit(http, server)

    assert reply.status_code == status_code
    body = reply.json()
    if status_code == 503:
        assert body["error_type"] == "runner_scheduling_failure"
        assert reply.headers["x-fal-error-type"] == "runner_scheduling_failure"
        assert isinstance(body["detail"], str)
    elif status_code == 429:
        assert reply.headers["retry-after"] == "3"
        assert isinstance(body["detail"], str)
    else:
        assert body["detail"][0]["loc"][0] == "body"
    assert http.get(f"{server.url}/_emulator/requests").json() == []
    assert http.get(f"{server.url}/_emulator/stats").json()["rejected"] == 1


def test_requests_beyond_the_concurrency_limit_wait_in_queue_with_positions(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(concurrency=1)

    submitted = [submit(http, server) for _ in range(3)]

    # The first is admitted at once; the other two wait, first in line and second in line.
    assert [reply.json()["queue_position"] for reply in submitted] == [0, 0, 1]
    third = http.get(submitted[2].json()["status_url"])
    assert (third.status_code, third.json()["status"]) == (202, "IN_QUEUE")
    assert third.json()["queue_position"] == 1
    for reply in submitted:
        wait_completed(http, reply)
    runs = http.get(f"{server.url}/_emulator/requests").json()
    for earlier, later in itertools.pairwise(runs):
        assert later["started_at"] >= earlier["finished_at"]


def test_raising_the_concurrency_limit_admits_waiting_requests(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(concurrency=1, latency=5.0, jitter=0.0)
    submitted = [submit(http, server) for _ in range(2)]
    status_url = submitted[1].json()["status_url"]
    assert http.get(status_url).json()["status"] == "IN_QUEUE"

    patched = http.patch(f"{server.url}/_emulator/config", json={"concurrency": 2})

    assert patched.json()["concurrency"] == 2
    wait_for(lambda: http.get(status_url).json()["status"] == "IN_PROGRESS", "admission")


def test_output_files_expire_after_the_result_lifetime(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(result_ttl=1.0)
    submitted = submit(http, server)
    wait_completed(http, submitted)

    url = http.get(submitted.json()["response_url"]).json()["images"][0]["url"]

    assert httpx.get(url).status_code == 200
    wait_for(lambda: httpx.get(url).status_code == 410, "the file to expire")
    assert httpx.get(f"{server.url}/files/never-issued").status_code == 404


def test_webhook_is_delivered_signed_with_a_published_key(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(user_id="user-42")

    submitted = submit(http, server, params={"fal_webhook": f"{hook.url}/hook"})

    wait_for(lambda: receiver.calls, "the webhook")
    headers, raw = receiver.calls[0]
    request_id = submitted.json()["request_id"]
    assert headers["x-fal-webhook-request-id"] == request_id
    assert headers["x-fal-webhook-user-id"] == "user-42"
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 300
    jwks = httpx.get(f"{server.url}/.well-known/jwks.json").json()
    verifying_kid(jwks, headers, raw)
    with pytest.raises(AssertionError, match="no published key"):
        verifying_kid(jwks, headers, raw + b" ")
    body = httpx.Response(200, content=raw).json()
    assert body["request_id"] == body["gateway_request_id"] == request_id
    assert body["status"] == "OK"
    assert body["payload"] == http.get(submitted.json()["response_url"]).json()
    [listed] = http.get(f"{server.url}/_emulator/requests").json()
    assert listed["webhook_url"] == f"{hook.url}/hook"


def test_webhook_is_retried_after_a_failed_delivery(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver(statuses=(500,))
    hook = serve(receiver.app)
    server = serve(webhook=WebhookPolicy(retry_delays=(0.05, 0.05)))

    submit(http, server, params={"fal_webhook": f"{hook.url}/hook"})

    wait_for(lambda: len(receiver.calls) == 2, "the retried webhook")
    assert receiver.calls[0][1] == receiver.calls[1][1]
    stats_url = f"{server.url}/_emulator/stats"
    wait_for(lambda: http.get(stats_url).json()["webhooks_sent"] == 1, "the delivery count")
    assert http.get(stats_url).json()["webhook_failures"] == 1


def test_webhook_duplicates_can_be_injected(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(webhook=WebhookPolicy(duplicates=2))

    submit(http, server, params={"fal_webhook": f"{hook.url}/hook"})

    wait_for(lambda: len(receiver.calls) == 3, "the webhook and its duplicates")
    assert len({raw for _, raw in receiver.calls}) == 1


def test_webhooks_can_be_dropped_on_purpose(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(webhook=WebhookPolicy(drop_rate=1.0))

    submit(http, server, params={"fal_webhook": f"{hook.url}/hook"})

    stats_url = f"{server.url}/_emulator/stats"
    wait_for(lambda: http.get(stats_url).json()["webhooks_dropped"] == 1, "the dropped webhook")
    # The drop is decided before any attempt, so nothing can still be on its way.
    assert receiver.calls == []


def test_a_moderated_request_completes_with_a_content_policy_error(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(rate_moderated=1.0)

    submitted = submit(http, server, params={"fal_webhook": f"{hook.url}/hook"})

    status = wait_completed(http, submitted)
    assert status["error_type"] == "content_policy_violation"
    assert status["error"]
    result = http.get(submitted.json()["response_url"])
    assert result.status_code == 422
    [detail] = result.json()["detail"]
    assert detail["type"] == "content_policy_violation"
    wait_for(lambda: receiver.calls, "the error webhook")
    body = httpx.Response(200, content=receiver.calls[0][1]).json()
    assert (body["status"], body["error"]) == ("ERROR", "Invalid status code: 422")
    assert body["payload"] == result.json()
    assert http.get(f"{server.url}/_emulator/stats").json()["failed"] == 1


def test_a_prompt_holding_a_moderated_word_is_moderated_and_others_are_not(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(moderated_words=("Beach",))

    flagged = wait_completed(http, submit(http, server, prompt="put it on a BEACH"))
    fine = wait_completed(http, submit(http, server, prompt="warm colour grade"))

    assert flagged["error_type"] == "content_policy_violation"
    assert fine.get("error_type") is None


@pytest.mark.parametrize(
    ("image_url", "error_type"),
    [
        (source_uri(b"this is not an image"), "image_load_error"),
        ("data:image/png;base64,@@@", "file_download_error"),
        ("ftp://example.invalid/a.png", "file_download_error"),
    ],
    ids=["not an image", "bad data uri", "unsupported scheme"],
)
def test_an_unusable_source_fails_the_request_naming_image_url(
    serve: Callable[..., RunningServer], http: httpx.Client, image_url: str, error_type: str
) -> None:
    server = serve()

    submitted = submit(http, server, image_url=image_url)

    assert submitted.status_code == 200
    assert wait_completed(http, submitted)["error_type"] == error_type
    result = http.get(submitted.json()["response_url"])
    assert result.status_code == 422
    [detail] = result.json()["detail"]
    assert (detail["loc"], detail["type"]) == (["body", "image_url"], error_type)


def test_sources_are_fetched_over_http(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    png = base64.b64decode(source_uri().partition(",")[2])
    files = FastAPI()
    files.get("/source.png")(lambda: Response(png, media_type="image/png"))
    origin = serve(files)
    server = serve()

    found = submit(http, server, image_url=f"{origin.url}/source.png")
    missing = submit(http, server, image_url=f"{origin.url}/missing.png")

    assert "error" not in wait_completed(http, found)
    assert wait_completed(http, missing)["error_type"] == "file_download_error"


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

    found = submit(http, server, image_url=f"{origin.url}/source.png")
    unreadable = submit(http, server, image_url=source_uri(text))
    missing = submit(http, server, image_url=f"{origin.url}/missing.png")
    for reply in (found, unreadable, missing):
        wait_completed(http, reply)

    listed = {
        item["request_id"]: item["source_sha256"]
        for item in http.get(f"{server.url}/_emulator/requests").json()
    }
    assert listed == {
        found.json()["request_id"]: hashlib.sha256(png).hexdigest(),
        unreadable.json()["request_id"]: hashlib.sha256(text).hexdigest(),
        missing.json()["request_id"]: None,
    }


def test_cancelling_queued_and_running_requests(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(concurrency=1, latency=5.0, jitter=0.0)
    running, queued = submit(http, server), submit(http, server)
    wait_for(
        lambda: http.get(running.json()["status_url"]).json()["status"] == "IN_PROGRESS", "run"
    )

    for reply in (queued, running):
        cancelled = http.put(reply.json()["cancel_url"])
        assert (cancelled.status_code, cancelled.json()) == (
            202,
            {"status": "CANCELLATION_REQUESTED"},
        )

    for reply in (queued, running):
        status = http.get(reply.json()["status_url"])
        assert (status.status_code, status.json()["error_type"]) == (200, "request_cancelled")
        assert http.get(reply.json()["response_url"]).status_code == 400
    again = http.put(queued.json()["cancel_url"])
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    unknown = http.put(f"{server.url}/fal-ai/flux-pro/requests/nope/cancel")
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})
    assert http.get(f"{server.url}/_emulator/stats").json()["cancelled"] == 2
    # The slot the cancelled request held is free again.
    follower = submit(http, server)
    wait_for(
        lambda: http.get(follower.json()["status_url"]).json()["status"] == "IN_PROGRESS", "next"
    )


def test_a_completed_request_cannot_be_cancelled(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    submitted = submit(http, server)
    wait_completed(http, submitted)

    reply = http.put(submitted.json()["cancel_url"])

    assert (reply.status_code, reply.json()) == (400, {"status": "ALREADY_COMPLETED"})
    assert http.get(submitted.json()["response_url"]).status_code == 200


def test_rotating_the_key_signs_with_the_new_one_and_keeps_the_old_one_published(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve()
    jwks_url = f"{server.url}/.well-known/jwks.json"
    [original] = httpx.get(jwks_url).json()["keys"]

    rotated = http.post(f"{server.url}/_emulator/rotate-key").json()
    submit(http, server, params={"fal_webhook": f"{hook.url}/hook"})

    jwks = httpx.get(jwks_url).json()
    assert [key["kid"] for key in jwks["keys"]] == [original["kid"], rotated["kid"]]
    headers, raw = wait_for(lambda: receiver.calls, "the webhook")[0]
    assert verifying_kid(jwks, headers, raw) == rotated["kid"]
    http.post(f"{server.url}/_emulator/rotate-key")
    kids = [key["kid"] for key in httpx.get(jwks_url).json()["keys"]]
    assert original["kid"] not in kids
    assert rotated["kid"] in kids


def test_admin_counts_and_lists_every_accepted_submission(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    accepted = [submit(http, server) for _ in range(2)]
    submit(http, server, prompt="")

    for reply in accepted:
        wait_completed(http, reply)

    listed = http.get(f"{server.url}/_emulator/requests").json()
    assert [item["request_id"] for item in listed] == [r.json()["request_id"] for r in accepted]
    assert all(item["status"] == "COMPLETED" and item["created_at"] for item in listed)
    stats = http.get(f"{server.url}/_emulator/stats").json()
    assert {key: stats[key] for key in ("accepted", "rejected", "completed", "failed")} == {
        "accepted": 2,
        "rejected": 1,
        "completed": 2,
        "failed": 0,
    }


def test_an_account_limit_answers_429_beyond_it_and_takes_work_again_when_freed(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(account_limit=2, latency=0.5, jitter=0.0)

    first, second, third = (submit(http, server) for _ in range(3))

    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert third.json()["error_type"] == "rate_limited" and "retry-after" in third.headers
    wait_completed(http, first)
    wait_completed(http, second)
    assert submit(http, server).status_code == 200


def test_fault_rates_can_be_changed_while_running(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    config_url = f"{server.url}/_emulator/config"

    assert http.patch(config_url, json={"rate_429": 1.0}).status_code == 200
    assert submit(http, server).status_code == 429
    assert http.patch(config_url, json={"rate_429": 0.0}).json()["rate_429"] == 0.0
    assert submit(http, server).status_code == 200
    assert http.patch(config_url, json={"rate_429": 2.0}).status_code == 422
    assert http.patch(config_url, json={"latency": "slow"}).status_code == 422
    assert http.patch(config_url, json={"colour": "red"}).status_code == 422
    assert http.get(config_url).json()["rate_429"] == 0.0


def test_a_full_queue_refuses_submits_past_fal_max_queue_length(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(concurrency=1, latency=5.0, jitter=0.0)
    submit(http, server)

    refused = submit(http, server, params={"fal_max_queue_length": "0"})
    allowed = submit(http, server, params={"fal_max_queue_length": "1"})

    assert refused.status_code == 429
    assert refused.json()["error_type"] == "queue_full"
    assert allowed.status_code == 200


def test_sync_mode_returns_data_uris_and_num_images_gives_several(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    submitted = submit(http, server, sync_mode=True, num_images=2, seed=5)
    wait_completed(http, submitted)

    output = http.get(submitted.json()["response_url"]).json()

    assert output["seed"] == 5
    assert output["has_nsfw_concepts"] == [False, False]
    urls = [image["url"] for image in output["images"]]
    assert all(url.startswith("data:image/jpeg;base64,") for url in urls)
    assert urls[0] != urls[1]
    Image.open(io.BytesIO(base64.b64decode(urls[0].partition(",")[2]))).verify()


def test_returned_urls_use_the_configured_public_base_url(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(public_base_url="https://fal.example.test/")

    body = submit(http, server).json()

    assert body["status_url"].startswith("https://fal.example.test/fal-ai/flux-pro/requests/")


def test_the_aspect_ratio_lists_agree() -> None:
    assert set(get_args(AspectRatio)) == set(ASPECT_RATIOS)


def test_a_seeded_injector_draws_the_same_faults() -> None:
    config = FalEmulatorConfig(rate_5xx=0.3, rate_429=0.3, rate_moderated=0.5, seed=9)

    def draws() -> list[tuple[SubmitFault | None, bool, float]]:
        injector = FaultInjector(config)
        return [
            (injector.submit_fault(), injector.moderated(), injector.latency()) for _ in range(20)
        ]

    first = draws()
    assert first == draws()
    assert len({fault for fault, _, _ in first}) == 3
