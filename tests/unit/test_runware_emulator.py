"""The Runware emulator over real HTTP: its task API, faults, uploads, webhooks, files, admin."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from PIL import Image

from emulators.runware import RunwareEmulatorConfig, create_app
from emulators.server import RunningServer
from tests.emulator_support import server_pool
from tests.waiting import wait_until

AUTH = {"Authorization": "Bearer test-key"}
# Fast enough for a unit suite, slow enough that "processing" can be observed.
FAST = {"latency": 0.2, "jitter": 0.0, "seed": 1}


def source_uri(payload: bytes | None = None) -> str:
    """A data URI holding a small PNG (or ``payload``, to send something that is not one)."""
    if payload is None:
        buffer = io.BytesIO()
        Image.linear_gradient("L").resize((160, 120)).convert("RGB").save(buffer, format="PNG")
        payload = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(payload).decode()


def inference(**changes: Any) -> dict[str, Any]:
    """A valid async ``imageInference`` task for ``bfl:3@1``, with ``changes`` applied."""
    task = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "bfl:3@1",
        "positivePrompt": "paint it teal",
        "inputs": {"referenceImages": [source_uri()]},
        "width": 1024,
        "height": 1024,
        "deliveryMethod": "async",
        **changes,
    }
    return {key: value for key, value in task.items() if value is not None}


class Receiver:
    """Our side of Runware's calls: presigned-PUT uploads and webhooks, recorded.

    ``upload_status`` is what every upload is answered with.
    """

    def __init__(self, upload_status: int = 200) -> None:
        self.uploads: list[tuple[str, str, bytes]] = []
        self.hooks: list[tuple[dict[str, str], Any]] = []
        self.upload_status = upload_status
        self.app = FastAPI()
        self.app.put("/bucket/{key}")(self._upload)
        self.app.post("/hook")(self._hook)

    async def _upload(self, key: str, request: Request) -> Response:
        self.uploads.append((key, request.headers["content-type"], await request.body()))
        return Response(status_code=self.upload_status)

    async def _hook(self, request: Request) -> Response:
        self.hooks.append((dict(request.headers), await request.json()))
        return Response(status_code=200)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start servers for the test, stopped at its end: emulators from config options, or apps."""
    with server_pool(
        lambda **options: create_app(RunwareEmulatorConfig(**{**FAST, **options}))
    ) as start:
        yield start


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, timeout=10.0) as client:
        yield client


def post(http: httpx.Client, server: RunningServer, *tasks: dict[str, Any]) -> httpx.Response:
    return http.post(f"{server.url}/v1", json=list(tasks))


def poll(http: httpx.Client, server: RunningServer, task_uuid: str) -> httpx.Response:
    return post(http, server, {"taskType": "getResponse", "taskUUID": task_uuid})


def wait_done(
    http: httpx.Client, server: RunningServer, task_uuid: str
) -> dict[str, list[dict[str, Any]]]:
    """Poll until no generation is processing; the last answer."""

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = poll(http, server, task_uuid).json()
        items = body["data"]
        return body if all(item["status"] != "processing" for item in items) else None

    return wait_until(done, timeout=10, interval=0.02, what=f"task {task_uuid}")


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_an_async_task_is_acknowledged_then_polled_to_its_images(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(latency=0.4)
    task = inference(width=1392, height=752, numberResults=2, includeCost=True, seed=7)

    ack = post(http, server, task)

    assert (ack.status_code, ack.json()) == (
        200,
        {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]},
    )
    first = poll(http, server, task["taskUUID"]).json()["data"]
    assert [item["status"] for item in first] == ["processing", "processing"]
    # The latency is spread over the generations: one finishes before the other.
    wait_until(
        lambda: (
            [i["status"] for i in poll(http, server, task["taskUUID"]).json()["data"]]
            == ["success", "processing"]
        ),
        timeout=10,
        interval=0.01,
        what="the first generation",
    )
    items = wait_done(http, server, task["taskUUID"])["data"]
    assert [item["seed"] for item in items] == [7, 8]
    for item in items:
        assert item["taskType"] == "imageInference"
        assert item["taskUUID"] == task["taskUUID"]
        assert (item["NSFWContent"], item["cost"]) == (False, 0.04)
        served = httpx.get(item["imageURL"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert item["imageURL"].endswith(f"/image/ws/2/ii/{item['imageUUID']}.jpg")
        assert decode(served.content).size == (1392, 752)
    assert items[0]["imageUUID"] != items[1]["imageUUID"]


def test_a_sync_task_answers_with_its_images(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    task = inference(deliveryMethod=None, outputFormat="PNG", width=832, height=1248)

    reply = post(http, server, task)

    assert reply.status_code == 200
    [item] = reply.json()["data"]
    assert "cost" not in item
    image = decode(httpx.get(item["imageURL"]).content)
    assert (image.format, image.size) == ("PNG", (832, 1248))
    assert http.get(f"{server.url}/_emulator/requests").json()[0]["deliveryMethod"] == "sync"


@pytest.mark.parametrize(
    ("output_type", "field", "prefix"),
    [("base64Data", "imageBase64Data", ""), ("dataURI", "imageDataURI", "data:image/webp;base64,")],
)
def test_outputs_can_come_inline(
    serve: Callable[..., RunningServer],
    http: httpx.Client,
    output_type: str,
    field: str,
    prefix: str,
) -> None:
    server = serve()
    task = inference(deliveryMethod="sync", outputType=output_type, outputFormat="webp")

    [item] = post(http, server, task).json()["data"]

    assert "imageURL" not in item
    assert item[field].startswith(prefix)
    assert decode(base64.b64decode(item[field].removeprefix(prefix))).format == "WEBP"


@pytest.mark.parametrize(
    ("change", "code", "parameter"),
    [
        ({"positivePrompt": None}, "missingParameter", "positivePrompt"),
        ({"model": "bfl:4@1"}, "invalidModel", "model"),
        ({"width": 1000}, "invalidDimensions", ["width", "height"]),
        ({"height": "1024"}, "invalidHeight", "height"),
        ({"numberResults": 5}, "invalidNumberResults", "numberResults"),
        ({"numberResults": True}, "invalidNumberResults", "numberResults"),
        ({"outputFormat": "GIF"}, "invalidOutputFormat", "outputFormat"),
        ({"deliveryMethod": "later"}, "invalidDeliveryMethod", "deliveryMethod"),
        ({"inputs": {"referenceImages": []}}, "invalidReferenceImages", "inputs.referenceImages"),
        ({"inputs": None}, "missingParameter", "referenceImages"),
        ({"webhookURL": "ftp://x"}, "invalidWebhookURL", "webhookURL"),
        ({"ttl": 5}, "invalidTtl", "ttl"),
        (
            {"providerSettings": {"bfl": {"safetyTolerance": "2"}}},
            "invalidSafetyTolerance",
            "providerSettings.bfl.safetyTolerance",
        ),
        ({"taskUUID": "not-a-uuid"}, "invalidTaskUUID", "taskUUID"),
    ],
)
def test_invalid_tasks_are_refused_with_runwares_error_body(
    serve: Callable[..., RunningServer],
    http: httpx.Client,
    change: dict[str, Any],
    code: str,
    parameter: str | list[str],
) -> None:
    server = serve()
    task = {**inference(), **change}
    task = {key: value for key, value in task.items() if value is not None}

    reply = post(http, server, task)

    assert reply.status_code == 400
    assert reply.json()["data"] == []
    [error] = reply.json()["errors"]
    assert (error["code"], error["parameter"], error["taskType"]) == (
        code,
        parameter,
        "imageInference",
    )
    assert error["message"]
    assert error["documentation"].startswith("https://runware.ai/docs/models/")
    if code != "invalidTaskUUID":
        assert error["taskUUID"] == task["taskUUID"]
    assert http.get(f"{server.url}/_emulator/requests").json() == []


def test_a_reused_task_uuid_is_a_conflict_and_runs_once(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    task = inference()
    assert post(http, server, task).status_code == 200

    again = post(http, server, task)

    assert again.status_code == 400
    [error] = again.json()["errors"]
    assert (error["code"], error["taskUUID"]) == ("conflictTaskUUID", task["taskUUID"])
    assert len(http.get(f"{server.url}/_emulator/requests").json()) == 1


def test_calls_without_a_valid_key_are_refused(serve: Callable[..., RunningServer]) -> None:
    server = serve(api_key="right")
    url = f"{server.url}/v1"

    missing = httpx.post(url, json=[inference()])
    wrong = httpx.post(url, json=[inference()], headers={"Authorization": "Bearer wrong"})

    for reply in (missing, wrong):
        assert reply.status_code == 401
        [error] = reply.json()["errors"]
        assert (error["code"], error["taskType"]) == ("invalidApiKey", "authentication")
    assert httpx.get(f"{server.url}/_emulator/stats").json()["rejected"] == 2


def test_the_key_can_come_in_an_authentication_task(serve: Callable[..., RunningServer]) -> None:
    server = serve(api_key="right")
    task = inference()

    reply = httpx.post(
        f"{server.url}/v1",
        json=[{"taskType": "authentication", "apiKey": "right"}, task, {"taskType": "ping"}],
    )

    assert reply.status_code == 200
    session, acked, pong = reply.json()["data"]
    assert session["taskType"] == "authentication"
    assert uuid.UUID(session["connectionSessionUUID"])
    assert acked == {"taskType": "imageInference", "taskUUID": task["taskUUID"]}
    assert pong == {"taskType": "ping", "pong": True}


def test_any_bearer_key_is_accepted_when_none_is_configured(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve()

    reply = httpx.post(
        f"{server.url}/v1", json=[inference()], headers={"Authorization": "Bearer anything"}
    )

    assert reply.status_code == 200


def test_a_body_that_is_not_a_task_array_is_refused(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()

    for body in (b"{not json", b'{"taskType": "ping"}'):
        reply = http.post(f"{server.url}/v1", content=body)
        assert reply.status_code == 400
        assert reply.json()["errors"][0]["code"] == "invalidRequestBody"


def test_polling_an_unknown_task_answers_task_not_found(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve()
    task_uuid = str(uuid.uuid4())

    reply = poll(http, server, task_uuid)

    assert reply.status_code == 404
    [error] = reply.json()["errors"]
    assert (error["code"], error["taskType"], error["taskUUID"]) == (
        "taskNotFound",
        "getResponse",
        task_uuid,
    )


@pytest.mark.parametrize(
    ("fault", "status_code", "code"),
    [
        ("rate_5xx", 503, "serviceUnavailable"),
        ("rate_429", 429, "rateLimitExceeded"),
        ("rate_422", 400, "invalidPositivePrompt"),
    ],
)
def test_injected_submit_faults_answer_runwares_error_bodies(
    serve: Callable[..., RunningServer],
    http: httpx.Client,
    fault: str,
    status_code: int,
    code: str,
) -> None:
    server = serve(**{fault: 1.0, "retry_after": 3})

    reply = post(http, server, inference())

    assert reply.status_code == status_code
    assert reply.json()["errors"][0]["code"] == code
    if status_code == 429:
        assert reply.headers["retry-after"] == "3"
    assert http.get(f"{server.url}/_emulator/requests").json() == []
    # Polls are not submits: no fault is injected into them.
    assert poll(http, server, str(uuid.uuid4())).status_code == 404


def test_a_moderated_task_reports_its_generations_failed(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(rate_moderated=1.0)
    task = inference(numberResults=2)
    post(http, server, task)

    answer = wait_done(http, server, task["taskUUID"])

    assert answer["data"] == []
    codes = [error["code"] for error in answer["errors"]]
    assert codes == ["providerContentPolicyViolation"] * 2
    assert poll(http, server, task["taskUUID"]).status_code == 200
    stats = http.get(f"{server.url}/_emulator/stats").json()
    assert (stats["failed"], stats["images"]) == (1, 0)


@pytest.mark.parametrize(
    "image", [source_uri(b"not an image"), "data:image/png;base64,@@@"], ids=["text", "bad uri"]
)
def test_an_unusable_reference_image_fails_naming_it(
    serve: Callable[..., RunningServer], http: httpx.Client, image: str
) -> None:
    server = serve()
    task = inference(inputs={"referenceImages": [image]})
    post(http, server, task)

    [error] = wait_done(http, server, task["taskUUID"])["errors"]

    assert (error["code"], error["parameter"]) == (
        "invalidReferenceImages",
        "inputs.referenceImages",
    )


def test_the_admin_listing_shows_the_reference_hash_once_per_task(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").save(buffer, format="PNG")
    png = buffer.getvalue()
    fetched: list[str] = []
    files = FastAPI()

    @files.get("/source.png")
    def source() -> Response:
        fetched.append("source.png")
        return Response(png, media_type="image/png")

    origin = serve(files)
    server = serve()
    found = inference(inputs={"referenceImages": [f"{origin.url}/source.png"]}, numberResults=3)
    missing = inference(inputs={"referenceImages": [f"{origin.url}/missing.png"]})
    post(http, server, found, missing)
    for task in (found, missing):
        wait_done(http, server, task["taskUUID"])

    listed = {
        item["taskUUID"]: item["source_sha256"]
        for item in http.get(f"{server.url}/_emulator/requests").json()
    }

    assert listed == {
        found["taskUUID"]: hashlib.sha256(png).hexdigest(),
        missing["taskUUID"]: None,
    }
    assert fetched == ["source.png"]


def test_outputs_are_put_to_the_upload_endpoint(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    bucket = serve(receiver.app)
    server = serve()
    task = inference(
        uploadEndpoint=f"{bucket.url}/bucket/out.png?X-Amz-Signature=s", outputFormat="PNG"
    )
    post(http, server, task)

    [item] = wait_done(http, server, task["taskUUID"])["data"]

    [(key, content_type, data)] = receiver.uploads
    assert (key, content_type) == ("out.png", "image/png")
    assert data == httpx.get(item["imageURL"]).content
    assert http.get(f"{server.url}/_emulator/stats").json()["uploads"] == 1


def test_a_refused_upload_fails_the_generation(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver(upload_status=403)
    bucket = serve(receiver.app)
    server = serve()
    task = inference(uploadEndpoint=f"{bucket.url}/bucket/out.jpg")
    post(http, server, task)

    [error] = wait_done(http, server, task["taskUUID"])["errors"]

    assert (error["code"], error["parameter"]) == ("uploadFailed", "uploadEndpoint")
    assert "HTTP 403" in error["message"]
    assert http.get(f"{server.url}/_emulator/stats").json()["upload_failures"] == 1


@pytest.mark.parametrize("shape", ["data", "flat"])
def test_each_generation_is_called_back_unsigned(
    serve: Callable[..., RunningServer], http: httpx.Client, shape: str
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(webhook_shape=shape)
    task = inference(numberResults=2, webhookURL=f"{hook.url}/hook?attempt=a&token=t")
    post(http, server, task)

    wait_until(lambda: len(receiver.hooks) == 2, timeout=10, interval=0.01, what="two webhooks")

    items = wait_done(http, server, task["taskUUID"])["data"]
    bodies = [body for _, body in receiver.hooks]
    expected = [{"data": [item]} for item in items] if shape == "data" else items
    assert sorted(bodies, key=str) == sorted(expected, key=str)
    assert not any("signature" in name for headers, _ in receiver.hooks for name in headers)
    stats_url = f"{server.url}/_emulator/stats"
    assert http.get(stats_url).json()["webhooks_sent"] == 2


def test_failed_generations_are_called_back_as_errors(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    receiver = Receiver()
    hook = serve(receiver.app)
    server = serve(rate_moderated=1.0)
    task = inference(webhookURL=f"{hook.url}/hook")
    post(http, server, task)

    [(_, body)] = wait_until(lambda: receiver.hooks, timeout=10, interval=0.01, what="webhook")

    assert body["errors"][0]["code"] == "providerContentPolicyViolation"
    assert body["errors"][0]["taskUUID"] == task["taskUUID"]


def test_output_urls_expire(serve: Callable[..., RunningServer], http: httpx.Client) -> None:
    server = serve(result_ttl=1.0)
    task = inference()
    post(http, server, task)
    [item] = wait_done(http, server, task["taskUUID"])["data"]

    assert httpx.get(item["imageURL"]).status_code == 200
    wait_until(lambda: httpx.get(item["imageURL"]).status_code == 410, timeout=10, what="expiry")
    assert httpx.get(f"{server.url}/image/ws/2/ii/never-issued.jpg").status_code == 404


def test_tasks_beyond_the_concurrency_limit_wait_their_turn(
    serve: Callable[..., RunningServer], http: httpx.Client
) -> None:
    server = serve(concurrency=1)
    tasks = [inference() for _ in range(3)]
    for task in tasks:
        post(http, server, task)

    for task in tasks:
        wait_done(http, server, task["taskUUID"])

    runs = http.get(f"{server.url}/_emulator/requests").json()
    assert [run["taskUUID"] for run in runs] == [task["taskUUID"] for task in tasks]
    for earlier, later in itertools.pairwise(runs):
        assert later["started_at"] >= earlier["finished_at"]


def test_admin_counts_and_settings(serve: Callable[..., RunningServer], http: httpx.Client) -> None:
    server = serve()
    config_url = f"{server.url}/_emulator/config"
    accepted = inference(includeCost=True, numberResults=2)
    post(http, server, accepted)
    post(http, server, inference(width=1))
    wait_done(http, server, accepted["taskUUID"])

    [listed] = http.get(f"{server.url}/_emulator/requests").json()
    stats = http.get(f"{server.url}/_emulator/stats").json()

    assert (listed["state"], listed["images"], listed["cost"]) == ("succeeded", 2, 0.08)
    assert {key: stats[key] for key in ("accepted", "rejected", "completed", "images")} == {
        "accepted": 1,
        "rejected": 1,
        "completed": 1,
        "images": 2,
    }
    assert http.patch(config_url, json={"rate_429": 1.0}).status_code == 200
    assert post(http, server, inference()).status_code == 429
    assert http.patch(config_url, json={"rate_429": 2.0}).status_code == 422
    assert http.patch(config_url, json={"colour": "red"}).status_code == 422
    assert http.get(config_url).json()["rate_429"] == 1.0
