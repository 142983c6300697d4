"""Our Runware adapter against the Runware emulator over real HTTP, with uploads and webhooks."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from PIL import Image

from emulators.runware import RunwareEmulatorConfig, create_app
from emulators.server import RunningServer, run_in_thread
from tests.waiting import wait_until
from worker.faults import ErrorKind
from worker.providers.base import (
    AttemptRef,
    Completed,
    Failed,
    Outcome,
    Pending,
    ProviderCallError,
    Submission,
)
from worker.providers.runware.adapter import RunwareProvider
from worker.values.canonical import EditInput

pytestmark = pytest.mark.integration

SECRET = b"integration-webhook-secret"


def source_uri() -> str:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((160, 120)).convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def data_uri_size(url: str) -> tuple[int, int]:
    """The size of an image in a data URI: what the worker's probe does for URLs."""
    with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
        return image.size


class OurSide:
    """What Runware calls on our side: the bucket's presigned PUT and the webhook route.

    Webhooks are handed to the adapter as the API would, and what it made of them is kept.
    """

    def __init__(self) -> None:
        self.provider: RunwareProvider | None = None
        self.uploads: dict[str, tuple[str, bytes]] = {}
        self.events: list[Any] = []
        self.app = FastAPI()
        self.app.put("/bucket/{key}")(self._put)
        self.app.post("/v1/webhooks/runware")(self._hook)

    async def _put(self, key: str, request: Request) -> Response:
        self.uploads[key] = (request.headers["content-type"], await request.body())
        return Response(status_code=200)

    async def _hook(self, request: Request) -> Response:
        assert self.provider is not None
        event = self.provider.parse_webhook(
            dict(request.headers), await request.body(), dict(request.query_params)
        )
        self.events.append(event)
        return Response(status_code=200)


@pytest.fixture
def our_side() -> Iterator[tuple[OurSide, RunningServer]]:
    side = OurSide()
    with run_in_thread(side.app) as server:
        yield side, server


@pytest.fixture
def emulator() -> Iterator[RunningServer]:
    config = RunwareEmulatorConfig(latency=0.3, jitter=0.05, seed=5, api_key="adapter-key")
    with run_in_thread(create_app(config)) as server:
        yield server


@pytest.fixture
def provider(emulator: RunningServer) -> Iterator[RunwareProvider]:
    with httpx.Client(timeout=10.0) as http:
        yield RunwareProvider(
            http,
            webhook_secret=SECRET,
            image_size=data_uri_size,
            base_url=f"{emulator.url}/v1",
            api_key="adapter-key",
        )


def edit(**changes: Any) -> EditInput:
    fields = {"prompt": "paint the wall teal", "image_url": source_uri(), "aspect_ratio": "16:9"}
    return EditInput(**{**fields, **changes})


def ref(attempt: uuid.UUID, submission: Submission) -> AttemptRef:
    return AttemptRef(attempt, submission.request_id, submission.data)


def settled(provider: RunwareProvider, attempt: AttemptRef) -> Outcome:
    """Poll until the attempt is no longer pending, as the poll tick would."""

    def probe() -> Outcome | None:
        outcome = provider.status(attempt)
        return None if isinstance(outcome, Pending) else outcome

    # mypy joins the union's members to object when it solves wait_until's T
    return cast(Outcome, wait_until(probe, timeout=15, interval=0.05, what="the Runware attempt"))


def accepted(emulator: RunningServer) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = httpx.get(f"{emulator.url}/_emulator/requests").json()
    return listed


def test_submit_poll_and_fetch_the_output(
    provider: RunwareProvider, emulator: RunningServer
) -> None:
    attempt = uuid.uuid4()

    submission = provider.submit("flux-kontext-pro", edit(num_images=2), attempt, None)
    assert provider.status(ref(attempt, submission)) == Pending()
    outcome = settled(provider, ref(attempt, submission))

    assert submission.request_id == str(attempt)
    assert isinstance(outcome, Completed)
    assert outcome.cost_usd == Decimal("0.08")
    assert len(outcome.outputs) == 2
    for output in outcome.outputs:
        assert (output.content_type, output.stored) == ("image/jpeg", False)
        served = httpx.get(output.url)
        assert Image.open(io.BytesIO(served.content)).size == (1392, 752)


def test_a_resubmitted_attempt_is_looked_up_not_paid_for_twice(
    provider: RunwareProvider, emulator: RunningServer
) -> None:
    attempt = uuid.uuid4()
    first = provider.submit("flux-kontext-pro", edit(), attempt, None)

    again = provider.submit("flux-kontext-pro", edit(), attempt, None)

    assert again == first
    assert isinstance(settled(provider, ref(attempt, again)), Completed)
    assert [task["taskUUID"] for task in accepted(emulator)] == [str(attempt)]
    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    # Runware ran (and charged for) one task; the second submit was refused as a conflict.
    assert (stats["accepted"], stats["rejected"], stats["images"]) == (1, 1, 1)


def test_without_an_aspect_ratio_the_source_shape_is_followed(
    provider: RunwareProvider, emulator: RunningServer
) -> None:
    attempt = uuid.uuid4()

    submission = provider.submit("flux-kontext-pro", edit(aspect_ratio=None), attempt, None)

    outcome = settled(provider, ref(attempt, submission))
    assert isinstance(outcome, Completed)
    [listed] = accepted(emulator)
    # The 160x120 source is 4:3.
    assert (listed["width"], listed["height"]) == (1184, 880)


def test_runware_puts_the_output_into_our_bucket(
    provider: RunwareProvider, our_side: tuple[OurSide, RunningServer]
) -> None:
    side, server = our_side
    attempt = uuid.uuid4()
    upload_url = f"{server.url}/bucket/{attempt}.png?X-Amz-Signature=abc"

    submission = provider.submit(
        "flux-kontext-pro", edit(output_format="png"), attempt, None, upload_url
    )
    outcome = settled(provider, ref(attempt, submission))

    assert isinstance(outcome, Completed)
    [output] = outcome.outputs
    assert (output.stored, output.content_type) == (True, "image/png")
    content_type, data = side.uploads[f"{attempt}.png"]
    assert content_type == "image/png"
    assert Image.open(io.BytesIO(data)).size == (1392, 752)


def test_each_image_calls_back_and_the_core_is_asked_to_poll(
    provider: RunwareProvider, our_side: tuple[OurSide, RunningServer]
) -> None:
    side, server = our_side
    side.provider = provider
    attempt = uuid.uuid4()
    hook = provider.webhook_url(server.url, attempt)
    assert hook is not None

    provider.submit("flux-kontext-pro", edit(num_images=2), attempt, hook)

    events = wait_until(lambda: len(side.events) == 2 and side.events, timeout=15, what="hooks")
    assert {(event.attempt_id, event.request_id) for event in events} == {(attempt, str(attempt))}
    assert all(isinstance(event.outcome, Pending) for event in events)
    assert dict(parse_qsl(urlsplit(hook).query))["attempt"] == str(attempt)


def test_a_moderated_attempt_fails_for_good(
    provider: RunwareProvider, emulator: RunningServer
) -> None:
    httpx.patch(f"{emulator.url}/_emulator/config", json={"rate_moderated": 1.0})
    attempt = uuid.uuid4()

    submission = provider.submit("flux-kontext-pro", edit(), attempt, None)
    outcome = settled(provider, ref(attempt, submission))

    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == (ErrorKind.TERMINAL, "content_moderated")


def test_an_attempt_runware_never_saw_is_lost(provider: RunwareProvider) -> None:
    attempt = uuid.uuid4()

    outcome = provider.status(AttemptRef(attempt, str(attempt), {"images": 1}))

    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == (
        ErrorKind.RETRYABLE,
        "provider_request_lost",
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("rate_429", (ErrorKind.RATE_LIMITED, "rate_limited", 2.0)),
        ("rate_5xx", (ErrorKind.RETRYABLE, "provider_unavailable", None)),
    ],
)
def test_refused_submits_are_classified(
    provider: RunwareProvider,
    emulator: RunningServer,
    fault: str,
    expected: tuple[ErrorKind, str, float | None],
) -> None:
    httpx.patch(f"{emulator.url}/_emulator/config", json={fault: 1.0, "retry_after": 2})

    with pytest.raises(ProviderCallError) as raised:
        provider.submit("flux-kontext-pro", edit(), uuid.uuid4(), None)

    found = raised.value.fault
    assert (found.kind, found.code, found.retry_after) == expected
    assert accepted(emulator) == []


def test_a_wrong_key_fails_for_good(emulator: RunningServer) -> None:
    with httpx.Client(timeout=10.0) as http:
        stolen = RunwareProvider(
            http,
            webhook_secret=SECRET,
            image_size=data_uri_size,
            base_url=f"{emulator.url}/v1",
            api_key="stolen",
        )
        with pytest.raises(ProviderCallError) as raised:
            stolen.submit("flux-kontext-pro", edit(), uuid.uuid4(), None)

    assert (raised.value.fault.kind, raised.value.fault.code) == (
        ErrorKind.TERMINAL,
        "provider_auth_failed",
    )
