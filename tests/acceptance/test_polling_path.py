"""End to end without a public URL, on each provider: running jobs are polled."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.acceptance.conftest import PROVIDERS, Running, sha256, start_stack

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def polling_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_job_succeeds_by_polling_with_the_providers_bytes(
    polling_stack: Running, provider: str
) -> None:
    before = polling_stack.stats(provider)
    job = polling_stack.submit(provider, input={"aspect_ratio": "16:9", "num_images": 2})

    done = polling_stack.wait_terminal(job["id"])

    assert done["state"] == "succeeded", done["error"]
    finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
    assert finalize["actor"] == "worker"  # a poll task found it finished
    assert polling_stack.stats(provider)["webhooks_sent"] == before["webhooks_sent"]
    originals = polling_stack.provider_outputs(provider, done["attempts"][0]["request_id"])
    assert len(done["outputs"]) == 2
    for output, original in zip(done["outputs"], originals, strict=True):
        assert sha256(httpx.get(output["url"]).content) == sha256(original) == output["sha256"]
        assert output["width"] > output["height"]  # 16:9 was honoured
    assert done["cost_usd"] == pytest.approx(0.08)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_moderated_result_fails_with_a_stable_code(polling_stack: Running, provider: str) -> None:
    polling_stack.faults(provider, rate_moderated=1.0)
    job = polling_stack.submit(provider)

    done = polling_stack.wait_terminal(job["id"])

    assert done["state"] == "failed"
    assert done["error"]["code"] == "content_moderated"
    assert len(done["attempts"]) == 1 and done["outputs"] == []
