"""Runware's own Python SDK (``runware-sdk``) against the Runware emulator over REST.

If the official client submits, polls with ``getResponse``, reads results and raises the
right errors against the emulator, the emulator speaks Runware's protocol. The SDK looks
model ids up in a registry it fetches from ``schemas.runware.ai`` (falling back to a
bundled snapshot after up to 3 s); tasks here name their ``taskType`` and an AIR model id,
which the SDK's own code takes without any lookup, and the registry URL is pointed at the
emulator anyway, so nothing leaves the machine and a lookup fails over at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import runware.client
from PIL import Image
from runware import Runware, RunwareError

from emulators.runware import RunwareEmulatorConfig, create_app
from emulators.server import RunningServer, run_in_thread

pytestmark = pytest.mark.integration


def source_uri() -> str:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((128, 96)).convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def kontext(**changes: Any) -> dict[str, Any]:
    """An ``imageInference`` task for FLUX.1 Kontext [pro], as an SDK user writes it."""
    return {
        "taskType": "imageInference",
        "model": "bfl:3@1",
        "positivePrompt": "turn the sky orange",
        "inputs": {"referenceImages": [source_uri()]},
        "width": 1248,
        "height": 832,
        **changes,
    }


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """A quick emulator, with the SDK's schema registry pointed at it (it answers 404)."""
    config = RunwareEmulatorConfig(latency=0.2, jitter=0.05, seed=3, api_key="sdk-key")
    with run_in_thread(create_app(config)) as server:
        monkeypatch.setattr(runware.client, "SCHEMAS_BASE_URL", server.url)
        yield server


def run(server: RunningServer, task: dict[str, Any], **config: Any) -> list[dict[str, Any]]:
    """One ``client.run`` through the REST transport, with a fresh client."""

    async def go() -> list[dict[str, Any]]:
        options: dict[str, Any] = {"api_key": "sdk-key", "max_retries": 0, **config}
        async with Runware(transport="rest", http_base_url=f"{server.url}/v1", **options) as sdk:
            return await asyncio.wait_for(sdk.run(task), timeout=30)

    return asyncio.run(go())


def stats(server: RunningServer) -> dict[str, int]:
    body: dict[str, int] = httpx.get(f"{server.url}/_emulator/stats").json()
    return body


def test_async_run_polls_to_a_real_edited_image(emulator: RunningServer) -> None:
    [result] = run(emulator, kontext(includeCost=True, seed=11))

    assert result["status"] == "success"
    assert (result["seed"], result["cost"], result["NSFWContent"]) == (11, 0.04, False)
    served = httpx.get(result["imageURL"])
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.content)).size == (1248, 832)
    # The SDK's default is async: an ack, then getResponse polls until the image is there.
    [listed] = httpx.get(f"{emulator.url}/_emulator/requests").json()
    assert (listed["taskUUID"], listed["deliveryMethod"]) == (result["taskUUID"], "async")
    assert stats(emulator)["polls"] >= 1


def test_sync_run_and_several_results(emulator: RunningServer) -> None:
    results = run(emulator, kontext(deliveryMethod="sync", numberResults=2, outputFormat="PNG"))

    assert len({result["imageUUID"] for result in results}) == 2
    for result in results:
        image = Image.open(io.BytesIO(httpx.get(result["imageURL"]).content))
        assert image.format == "PNG"
    assert stats(emulator)["polls"] == 0


def test_a_model_named_without_its_task_type_falls_back_to_the_bundled_registry(
    emulator: RunningServer,
) -> None:
    task = kontext()
    del task["taskType"]

    [result] = run(emulator, task)

    assert result["taskType"] == "imageInference"


@pytest.mark.parametrize(
    ("task", "code", "parameter"),
    [
        (kontext(width=1000), "validation", "width"),
        (kontext(positivePrompt=None), "validation", "positivePrompt"),
        (kontext(model="bfl:4@1"), "validation", "model"),
    ],
)
def test_invalid_tasks_raise_validation_errors(
    emulator: RunningServer, task: dict[str, Any], code: str, parameter: str
) -> None:
    with pytest.raises(RunwareError) as raised:
        run(emulator, {key: value for key, value in task.items() if value is not None})

    assert (raised.value.code, raised.value.status_code) == (code, 400)
    assert raised.value.parameter == parameter
    assert raised.value.retryable is False


def test_a_reused_task_uuid_is_refused_as_a_conflict(emulator: RunningServer) -> None:
    task = kontext(taskUUID=str(uuid.uuid4()))
    run(emulator, task)

    with pytest.raises(RunwareError) as raised:
        run(emulator, task)

    assert raised.value.code == "validation"
    assert "already exists" in raised.value.message
    assert len(httpx.get(f"{emulator.url}/_emulator/requests").json()) == 1


def test_a_wrong_key_raises_an_auth_error(emulator: RunningServer) -> None:
    with pytest.raises(RunwareError) as raised:
        run(emulator, kontext(), api_key="not-the-key")

    assert (raised.value.code, raised.value.status_code) == ("auth", 401)


def test_a_moderated_result_raises_a_safety_error(emulator: RunningServer) -> None:
    httpx.patch(f"{emulator.url}/_emulator/config", json={"rate_moderated": 1.0})

    with pytest.raises(RunwareError) as raised:
        run(emulator, kontext())

    assert raised.value.code == "safety"


@pytest.mark.parametrize(("fault", "status"), [("rate_5xx", 503), ("rate_429", 429)])
def test_the_sdk_retries_injected_overload_answers(
    emulator: RunningServer, fault: str, status: int
) -> None:
    httpx.patch(f"{emulator.url}/_emulator/config", json={fault: 1.0, "retry_after": 0})

    with pytest.raises(RunwareError) as raised:
        run(emulator, kontext(), max_retries=1, retry_delay=1)

    assert (raised.value.status_code, raised.value.retryable) == (status, True)
    # The SDK treats these as transient: one try, one retry, both refused.
    assert stats(emulator)["rejected"] == 2
