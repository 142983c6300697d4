"""The real processes' logs in production's format: JSON lines that name the job.

A batch runs on fal (results by webhook) and on Runware (whose callback URL carries a
secret token); then every line of the API's and the worker's logs is read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.acceptance.conftest import Running, start_stack
from tests.factories import data_uri
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def json_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(
        test_env,
        tmp_path_factory.mktemp("logs"),
        webhooks=True,
        extra_env={"EDITQ_LOG_FORMAT": "json"},
    )


def lines(stack: Running, process: str) -> list[str]:
    return (stack.stack.logs / f"{process}.log").read_text().splitlines()


def structured(stack: Running, process: str) -> list[dict[str, Any]]:
    """The process's log lines from its logging (not a banner a library prints)."""
    parsed = []
    for line in lines(stack, process):
        if line.startswith("{"):
            parsed.append(json.loads(line))  # a line that starts as JSON must be JSON
    return parsed


@pytest.fixture(scope="module")
def batch(json_stack: Running) -> dict[str, Any]:
    """A finished batch of two jobs, one on fal and one on Runware, with their ids."""
    rows = [
        {"external_id": f"SKU-{n}", "image_url": data_uri(n), "prompt": "Put it on marble",
         "providers": [provider]}
        for n, provider in enumerate(("fal", "runware"), start=1)
    ]  # fmt: skip
    batch_id = json_stack.post_batch(rows)["id"]

    def finished() -> dict[str, Any] | None:
        shown: dict[str, Any] = json_stack.api.get(f"/v1/batches/{batch_id}").json()
        return shown if shown["state"] == "completed" else None

    done = wait_until(finished, timeout=60, what="the batch to complete")
    assert done["done"] == 2
    jobs = json_stack.api.get("/v1/jobs", params={"batch_id": batch_id}).json()["jobs"]
    return {"id": batch_id, "jobs": {j["provider"]: j["id"] for j in jobs}}


def test_every_line_about_a_job_names_it_its_attempt_provider_and_batch(
    json_stack: Running, batch: dict[str, Any]
) -> None:
    for provider, job_id in batch["jobs"].items():
        about = [
            line
            for process in ("worker", "api")
            for line in structured(json_stack, process)
            if line.get("job_id") == job_id
        ]
        said = [line["event"] for line in about]
        assert f"submitted to {provider} as" in " ".join(said), said
        assert any(e.startswith("succeeded: 1 output(s) stored") for e in said), said
        for line in about:
            assert line["attempt"] == 1 and line["level"] and line["timestamp"], line
            # From the message alone a task knows the job and attempt; once it has read the
            # job (before any line of editq's own), its provider and batch too.
            if line["logger"].startswith("editq."):
                assert line["batch_id"] == batch["id"], line
                assert line["provider"] == provider, line


def test_the_result_by_webhook_is_logged_by_the_api_under_the_job(
    json_stack: Running, batch: dict[str, Any]
) -> None:
    job_id = batch["jobs"]["fal"]
    api = [line for line in structured(json_stack, "api") if line.get("job_id") == job_id]
    assert [line["event"] for line in api] == ["fal finished the attempt: 1 output(s)"]
    assert api[0]["logger"] == "editq.pipeline"


def test_no_line_carries_a_secret_and_every_logged_line_is_json(
    json_stack: Running, batch: dict[str, Any]
) -> None:
    secret = json_stack.stack.env["EDITQ_WEBHOOK_SECRET"]
    api = lines(json_stack, "api")
    runware_calls = [line for line in api if "/v1/webhooks/runware" in line]
    assert runware_calls and all("token=***" in line for line in runware_calls)
    for process in ("api", "worker", "scheduler"):
        text = lines(json_stack, process)
        assert secret not in "\n".join(text)
        # uvicorn's access lines are structured too, not only editq's own.
        logged = structured(json_stack, process)
        assert logged, process
        assert all("event" in line and "level" in line for line in logged)
    assert any(line["logger"] == "uvicorn.access" for line in structured(json_stack, "api"))
