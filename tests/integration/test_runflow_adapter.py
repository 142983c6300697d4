"""The Runflow adapter over real HTTP against the Runflow emulator: runs, outputs, callbacks.

Callbacks go from the emulator to a small receiver that hands the raw body and headers to
the adapter, as the API's webhook route does.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from PIL import Image

from emulators.faults import WebhookPolicy
from emulators.runflow import RunflowEmulatorConfig, create_app
from emulators.server import RunningServer, run_in_thread
from tests.waiting import wait_until
from worker.errors import WebhookRejected
from worker.faults import ErrorKind
from worker.providers.base import (
    AttemptRef,
    Completed,
    Failed,
    Pending,
    ProviderCallError,
    WebhookEvent,
)
from worker.providers.runflow.adapter import RunflowProvider
from worker.values.canonical import EditInput

pytestmark = pytest.mark.integration

API_KEY = "rf_live_integration"
SECRET = "whsec_integration-secret"


def source_uri() -> str:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((128, 96)).convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


EDIT = EditInput(prompt="turn the sky orange", image_url=source_uri(), output_format="png")


class AdapterReceiver:
    """Our webhook route in miniature: raw body and headers go to ``parse_webhook``."""

    def __init__(self, provider: RunflowProvider) -> None:
        self.events: list[WebhookEvent] = []
        self.rejections: list[str] = []
        self.app = FastAPI()
        self.app.post("/v1/webhooks/runflow")(self._hook)
        self._provider = provider

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        try:
            event = self._provider.parse_webhook(
                dict(request.headers), body, dict(request.query_params)
            )
        except WebhookRejected as exc:
            self.rejections.append(exc.code)
            return Response(status_code=401)
        self.events.append(event)
        return Response(status_code=200)


@pytest.fixture
def servers() -> Iterator[Callable[[Any], RunningServer]]:
    started: list[RunningServer] = []

    def start(app: Any) -> RunningServer:
        server = run_in_thread(app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def emulator(servers: Callable[[Any], RunningServer]) -> RunningServer:
    config = RunflowEmulatorConfig(
        latency=0.15,
        jitter=0.02,
        concurrency=4,
        seed=5,
        api_key=API_KEY,
        callback_secret=SECRET,
        webhook=WebhookPolicy(retry_delays=(0.1, 0.2)),
    )
    return servers(create_app(config))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def adapter(http: httpx.Client, url: str, secret: str = SECRET) -> RunflowProvider:
    return RunflowProvider(http, base_url=url, api_key=API_KEY, callback_secret=secret.encode())


def until_ended(provider: RunflowProvider, ref: AttemptRef) -> Completed | Failed:
    def ended() -> tuple[Completed | Failed] | None:
        # A one-element tuple, so the union survives wait_until's type inference.
        outcome = provider.status(ref)
        return None if isinstance(outcome, Pending) else (outcome,)

    return wait_until(ended, timeout=15, interval=0.02, what="the run to end")[0]


def submitted(provider: RunflowProvider, hook: str | None = None) -> AttemptRef:
    attempt = uuid.uuid4()
    submission = provider.submit("flux-kontext-pro", EDIT, attempt, hook)
    return AttemptRef(attempt, submission.request_id, submission.data)


def test_a_run_is_polled_to_completion_and_its_output_fetched(
    emulator: RunningServer, http: httpx.Client
) -> None:
    provider = adapter(http, emulator.url)
    ref = submitted(provider)

    outcome = until_ended(provider, ref)

    assert isinstance(outcome, Completed)
    assert outcome.cost_usd == Decimal("0.04")
    [output] = outcome.outputs
    assert output.content_type == "image/png"
    fetched = http.get(output.url)
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).format == "PNG"
    [listed] = http.get(f"{emulator.url}/_emulator/requests").json()
    assert (listed["id"], listed["client_ref"]) == (ref.request_id, str(ref.attempt_id))


def test_a_callback_from_the_emulator_is_verified_and_read(
    emulator: RunningServer,
    servers: Callable[[Any], RunningServer],
    http: httpx.Client,
) -> None:
    provider = adapter(http, emulator.url)
    receiver = AdapterReceiver(provider)
    hook = servers(receiver.app)

    ref = submitted(provider, provider.webhook_url(hook.url, uuid.uuid4()))

    [event] = wait_until(lambda: receiver.events, timeout=15, what="the callback")
    assert (event.attempt_id, event.request_id) == (ref.attempt_id, ref.request_id)
    assert isinstance(event.outcome, Completed)
    polled = until_ended(provider, ref)
    assert isinstance(polled, Completed)
    # Runflow signs its output URLs on every read: the same objects, signed afresh.
    assert [_object(o.url) for o in event.outcome.outputs] == [
        _object(o.url) for o in polled.outputs
    ]
    assert receiver.rejections == []


def _object(url: str) -> str:
    """A signed URL without its signature: what it points at."""
    return url.split("?", 1)[0]


def test_a_callback_signed_with_another_secret_is_refused_and_retried(
    emulator: RunningServer,
    servers: Callable[[Any], RunningServer],
    http: httpx.Client,
) -> None:
    receiver = AdapterReceiver(adapter(http, emulator.url, secret="whsec_not-the-one"))
    hook = servers(receiver.app)
    provider = adapter(http, emulator.url)

    ref = submitted(provider, f"{hook.url}/v1/webhooks/runflow")

    wait_until(lambda: len(receiver.rejections) == 3, timeout=15, what="every attempt")
    assert set(receiver.rejections) == {"webhook_signature_invalid"}
    assert receiver.events == []
    history = f"{emulator.url}/v1/runs/{ref.request_id}/callback"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def gave_up() -> dict[str, Any] | None:
        [delivery] = http.get(history, headers=headers).json()
        return delivery if delivery["status_code"] == "failed" else None

    delivery = wait_until(gave_up, timeout=15, what="the delivery to give up")
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [401, 401, 401]


def test_a_rotated_secret_verifies_new_callbacks(
    emulator: RunningServer,
    servers: Callable[[Any], RunningServer],
    http: httpx.Client,
) -> None:
    issued = http.post(
        f"{emulator.url}/v1/callback-secrets", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()["plain_secret"]
    provider = adapter(http, emulator.url, secret=issued)
    receiver = AdapterReceiver(provider)
    hook = servers(receiver.app)

    ref = submitted(provider, provider.webhook_url(hook.url, uuid.uuid4()))

    [event] = wait_until(lambda: receiver.events, timeout=15, what="the callback")
    assert event.attempt_id == ref.attempt_id


def test_the_emulators_failures_are_classified_by_the_adapter(
    emulator: RunningServer, http: httpx.Client
) -> None:
    provider = adapter(http, emulator.url)
    config_url = f"{emulator.url}/_emulator/config"

    http.patch(config_url, json={"rate_moderated": 1.0})
    moderated = until_ended(provider, submitted(provider))
    assert isinstance(moderated, Failed)
    assert (moderated.fault.kind, moderated.fault.code) == (ErrorKind.TERMINAL, "content_moderated")

    for rate, retry_after, expected in (
        ("rate_429", 2.0, (ErrorKind.RATE_LIMITED, "rate_limited")),
        ("rate_5xx", None, (ErrorKind.RETRYABLE, "provider_unavailable")),
        ("rate_422", None, (ErrorKind.TERMINAL, "provider_validation")),
    ):
        http.patch(config_url, json={rate: 1.0, "retry_after": 2.0})
        with pytest.raises(ProviderCallError) as caught:
            submitted(provider)
        assert (caught.value.fault.kind, caught.value.fault.code) == expected
        assert caught.value.fault.retry_after == retry_after
        http.patch(config_url, json={rate: 0.0})

    outsider = RunflowProvider(http, base_url=emulator.url, api_key="rf_live_wrong")
    with pytest.raises(ProviderCallError) as refused:
        submitted(outsider)
    assert refused.value.fault.code == "provider_auth_failed"
    lost = provider.status(AttemptRef(uuid.uuid4(), str(uuid.uuid4()), {}))
    assert isinstance(lost, Failed)
    assert lost.fault.code == "provider_request_lost"
