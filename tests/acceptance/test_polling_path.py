"""End to end without a public URL: running jobs are polled, no webhook is involved."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.acceptance.conftest import Running, sha256, start_stack

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def polling_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=False)


def test_a_job_succeeds_by_polling_with_the_providers_bytes(polling_stack: Running) -> None:
    before = polling_stack.stats()
    job = polling_stack.submit(input={"aspect_ratio": "16:9"})

    done = polling_stack.wait_terminal(job["id"])

    assert done["state"] == "succeeded", done["error"]
    finalize = next(e for e in done["events"] if e["transition"] == "begin_finalize")
    assert finalize["actor"] == "worker"  # a poll task found it finished
    assert polling_stack.stats()["webhooks_sent"] == before["webhooks_sent"]
    [output] = done["outputs"]
    [original] = polling_stack.provider_outputs(done["attempts"][0]["request_id"])
    assert sha256(httpx.get(output["url"]).content) == sha256(original) == output["sha256"]
    assert output["width"] > output["height"]  # 16:9 was honoured


def test_a_moderated_result_fails_with_a_stable_code(polling_stack: Running) -> None:
    polling_stack.faults(rate_moderated=1.0)
    job = polling_stack.submit()

    done = polling_stack.wait_terminal(job["id"])

    assert done["state"] == "failed"
    assert done["error"]["code"] == "content_moderated"
    assert len(done["attempts"]) == 1 and done["outputs"] == []
