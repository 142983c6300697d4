"""fal's own Python SDK (``fal-client``) against the fal emulator: if the SDK is happy, so is ours.

The SDK builds https URLs from module constants, so the tests point those at the emulator's
plain-http URL; after submit it follows the URLs the emulator hands back.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import fal_client
import fal_client.client
import httpx
import pytest
from PIL import Image

from emulators.fal import FalEmulatorConfig, create_app
from emulators.server import RunningServer, run_in_thread

pytestmark = pytest.mark.integration

KONTEXT = "fal-ai/flux-pro/kontext"


def source_uri() -> str:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((128, 96)).convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def arguments(**changes: Any) -> dict[str, Any]:
    return {"prompt": "turn the sky orange", "image_url": source_uri(), **changes}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """An emulator running one request at a time, with the SDK's hosts pointed at it."""
    config = FalEmulatorConfig(latency=0.2, jitter=0.05, concurrency=1, seed=3)
    with run_in_thread(create_app(config)) as server:
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{server.url}/")
        monkeypatch.setattr(fal_client.client, "RUN_URL_FORMAT", f"{server.url}/")
        yield server


@pytest.fixture
def client() -> Iterator[fal_client.SyncClient]:
    sdk = fal_client.SyncClient(key="test")
    yield sdk
    # The SDK has no close(); its HTTP client is a cached property, closed here so no socket
    # is left for the garbage collector to warn about.
    sdk._client.close()


def until_completed(status: Callable[[], fal_client.Status]) -> list[fal_client.Status]:
    """Every status seen while polling to Completed, with a deadline."""
    seen: list[fal_client.Status] = []
    deadline = time.monotonic() + 15
    while not seen or not isinstance(seen[-1], fal_client.Completed):
        assert time.monotonic() < deadline, f"not completed in time; saw {seen}"
        seen.append(status())
        time.sleep(0.02)
    return seen


def test_submit_poll_and_get_an_edited_image(
    emulator: RunningServer, client: fal_client.SyncClient
) -> None:
    handle = client.submit(KONTEXT, arguments=arguments(output_format="png"))

    seen = until_completed(lambda: handle.status(with_logs=True))
    result = handle.get()

    assert isinstance(seen[0], fal_client.Queued | fal_client.InProgress)
    completed = seen[-1]
    assert isinstance(completed, fal_client.Completed)
    assert completed.error is None
    assert "inference_time" in completed.metrics
    assert completed.logs
    [image] = result["images"]
    served = httpx.get(image["url"])
    assert served.status_code == 200
    decoded = Image.open(io.BytesIO(served.content))
    assert decoded.format == "PNG"
    assert decoded.size == (image["width"], image["height"])


def test_status_and_result_by_request_id_rebuild_urls_without_the_subpath(
    emulator: RunningServer, client: fal_client.SyncClient
) -> None:
    request_id = client.submit(KONTEXT, arguments=arguments()).request_id

    until_completed(lambda: client.status(KONTEXT, request_id))

    assert client.result(KONTEXT, request_id)["images"][0]["content_type"] == "image/jpeg"


def test_queued_requests_report_their_position_and_can_be_cancelled(
    emulator: RunningServer, client: fal_client.SyncClient
) -> None:
    handles = [client.submit(KONTEXT, arguments=arguments()) for _ in range(3)]

    assert handles[2].status() == fal_client.Queued(position=1)
    handles[2].cancel()

    cancelled = handles[2].status()
    assert isinstance(cancelled, fal_client.Completed)
    assert cancelled.error_type == "request_cancelled"
    for handle in handles[:2]:
        assert handle.get()["images"]
    accepted = httpx.get(f"{emulator.url}/_emulator/requests").json()
    assert [item["request_id"] for item in accepted] == [h.request_id for h in handles]


def test_invalid_input_raises_the_sdk_http_error(
    emulator: RunningServer, client: fal_client.SyncClient
) -> None:
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        client.submit(KONTEXT, arguments=arguments(safety_tolerance=2))

    assert raised.value.status_code == 422
    [detail] = raised.value.response.json()["detail"]
    assert detail["loc"] == ["body", "safety_tolerance"]


def test_a_scheduling_failure_reaches_the_caller_without_sdk_retries(
    emulator: RunningServer, client: fal_client.SyncClient
) -> None:
    httpx.patch(f"{emulator.url}/_emulator/config", json={"rate_5xx": 1.0})

    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        client.submit(KONTEXT, arguments=arguments())

    assert (raised.value.status_code, raised.value.error_type) == (503, "runner_scheduling_failure")
    # fal's SDK retries only ingress errors (no x-fal-request-id, nginx body); this is not one.
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["rejected"] == 1


def test_a_moderated_result_raises_with_the_models_error(
    emulator: RunningServer, client: fal_client.SyncClient
) -> None:
    httpx.patch(f"{emulator.url}/_emulator/config", json={"rate_moderated": 1.0})
    handle = client.submit(KONTEXT, arguments=arguments(), webhook_url="http://127.0.0.1:9/hook")

    completed = until_completed(handle.status)[-1]
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.get()

    assert isinstance(completed, fal_client.Completed)
    assert completed.error_type == "content_policy_violation"
    assert raised.value.status_code == 422
    [listed] = httpx.get(f"{emulator.url}/_emulator/requests").json()
    assert listed["webhook_url"] == "http://127.0.0.1:9/hook"


def test_the_async_client_follows_the_same_protocol(emulator: RunningServer) -> None:
    async def edit() -> dict[str, Any]:
        sdk = fal_client.AsyncClient(key="test")
        try:
            handle = await sdk.submit(KONTEXT, arguments=arguments(num_images=2))
            return await asyncio.wait_for(handle.get(), timeout=15)
        finally:
            # As with the sync client: no public close, so close its cached HTTP client.
            await (await sdk._client).aclose()

    result = asyncio.run(edit())

    assert len(result["images"]) == 2
