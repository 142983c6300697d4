"""Multi-turn chains on the real processes, as producers and ops use them.

Every check of a step's source is by hash: what the emulator downloaded for step k must be
step k-1's output as editq stored it (its ``sha256`` in the API), and the emulators'
counters must show each step paid for once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PROVIDERS, Running, start_stack
from tests.factories import data_uri
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance

STEPS = [{"prompt": "Put it on a beach"}, {"prompt": "Warm colour grade", "output_format": "png"}]


@pytest.fixture(scope="module")
def chain_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=True)


def _requests(stack: Running) -> dict[str, dict[str, Any]]:
    """Every submission each emulator accepted, by its request id."""
    found: dict[str, dict[str, Any]] = {}
    for provider in PROVIDERS:
        for r in stack.emulators[provider].get("/_emulator/requests").json():
            found[r.get("request_id") or r.get("taskUUID") or r["id"]] = r
    return found


def _sha(uri: str) -> str:
    return hashlib.sha256(base64.b64decode(uri.split(",", 1)[1])).hexdigest()


def _sources(stack: Running, job: dict[str, Any]) -> list[str | None]:
    """What the provider downloaded for each attempt of ``job``, as sha256."""
    asked = _requests(stack)
    return [asked[a["request_id"]]["source_sha256"] for a in job["attempts"]]


def _step_outputs(job: dict[str, Any]) -> list[str]:
    """The sha256 of the output each step handed on (its ``use_output``, 0 here)."""
    return [step["outputs"][0]["sha256"] for step in job["steps"]]


@pytest.mark.parametrize(
    "route",
    [*(([p], [p], [p]) for p in PROVIDERS), (["fal"], ["runware"], ["runflow"])],
    ids=[*PROVIDERS, "fal-then-runware-then-runflow"],
)
def test_a_three_step_chain_succeeds_each_step_editing_the_one_before(
    chain_stack: Running, route: tuple[list[str], ...]
) -> None:
    image = data_uri(7)
    steps = [{**s, "providers": providers} for s, providers in zip(STEPS, route[1:], strict=True)]
    job = chain_stack.submit(providers=route[0], input={"image_url": image}, steps=steps)
    assert [s["state"] for s in job["steps"]] == ["queued", "pending", "pending"]

    done = chain_stack.wait_terminal(job["id"], timeout=90)

    assert done["state"] == "succeeded", done["error"]
    assert [s["state"] for s in done["steps"]] == ["succeeded"] * 3
    assert [s["provider"] for s in done["steps"]] == [r[0] for r in route]
    assert [(a["step"], a["outcome"]) for a in done["attempts"]] == [
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "succeeded"),
    ]
    # Step k's source is step k-1's output as stored in our bucket, byte for byte.
    handed_on = _step_outputs(done)
    assert _sources(chain_stack, done) == [_sha(image), handed_on[0], handed_on[1]]
    # Each step's outputs stay in the bucket; the job's own outputs are the last step's.
    for step in done["steps"]:
        (output,) = step["outputs"]
        assert hashlib.sha256(httpx.get(output["url"]).content).hexdigest() == output["sha256"]
        assert step["cost_usd"] > 0
    assert done["outputs"] == done["steps"][2]["outputs"]
    assert done["outputs"][0]["content_type"] == "image/png"
    assert done["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in done["steps"]))


def test_a_step_moderated_then_retried_by_ops_finishes_paying_step_one_once(
    chain_stack: Running,
) -> None:
    image = data_uri(8)
    steps = [{"prompt": "Put it in a lagoon"}, {"prompt": "Warm colour grade"}]
    before = {p: chain_stack.stats(p)["accepted"] for p in PROVIDERS}
    chain_stack.faults("fal", moderated_words=["lagoon"])
    job = chain_stack.submit(input={"image_url": image}, steps=steps)
    failed = chain_stack.wait_terminal(job["id"], timeout=60)
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "content_moderated" and failed["error"]["step"] == 2
    assert [s["state"] for s in failed["steps"]] == ["succeeded", "failed", "pending"]
    (kept,) = failed["steps"][0]["outputs"]

    # The provider is fixed; ops retry what failed by its error code, with a dry run first.
    chain_stack.faults("fal", moderated_words=[])
    retry = {"error_code": "content_moderated", "reason": "moderation relaxed"}
    dry = chain_stack.api.post("/v1/jobs/retry", json={**retry, "dry_run": True}).json()
    assert dry["matched"] >= 1 and job["id"] in {j["id"] for j in dry["sample"]}
    assert chain_stack.api.post("/v1/jobs/retry", json=retry).json()["retried"] >= 1
    done = chain_stack.wait_terminal(job["id"], timeout=60)

    assert done["state"] == "succeeded", done["error"]
    assert done["steps"][0]["outputs"] == [{**kept, "url": done["steps"][0]["outputs"][0]["url"]}]
    assert [(a["step"], a["outcome"]) for a in done["attempts"]] == [
        (1, "succeeded"),
        (2, "failed"),
        (2, "succeeded"),
        (3, "succeeded"),
    ]
    # Four submissions reached fal, one for each attempt; only one edited the original.
    assert chain_stack.stats("fal")["accepted"] - before["fal"] == 4
    sources = _sources(chain_stack, done)
    assert sources.count(_sha(image)) == 1
    assert sources[1] == sources[2] == kept["sha256"]
    retried = [e for e in done["events"] if e["transition"] == "retry"]
    assert [e["reason"] for e in retried] == ["moderation relaxed"]


def test_a_batch_of_two_hundred_three_step_chains_completes_with_every_step_in_its_results(
    chain_stack: Running,
) -> None:
    image = data_uri(9)
    rows = [
        {
            "external_id": f"SKU-{i:03d}",
            "image_url": image,
            "prompt": "Remove the background",
            "providers": [PROVIDERS[i % 3]],
            "steps": STEPS,
        }
        for i in range(200)
    ]
    answer = chain_stack.post_batch(rows)
    batch_id = answer["id"]
    assert answer["steps"] == {"total": 600, "done": 0}

    def finished() -> dict[str, Any] | None:
        batch: dict[str, Any] = chain_stack.api.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["state"] == "completed" else None

    batch = wait_until(finished, timeout=300, interval=1, what="the batch to complete")

    assert batch["done"] == 200 and batch["failed"] == 0
    assert batch["steps"] == {"total": 600, "done": 600}
    files = chain_stack.api.get(f"/v1/batches/{batch_id}/results").json()
    results = [json.loads(x) for x in httpx.get(files["results"]["url"]).text.splitlines()]
    assert sorted(r["external_id"] for r in results) == [r["external_id"] for r in rows]
    asked = _requests(chain_stack)
    for line in results[:20]:
        assert line["state"] == "succeeded"
        assert [s["step"] for s in line["steps"]] == [1, 2, 3]
        assert line["outputs"] == line["steps"][2]["outputs"]
        assert line["outputs"][0]["content_type"] == "image/png"
        job = chain_stack.job(line["job_id"], events=False)
        assert _step_outputs(job) == [s["outputs"][0]["sha256"] for s in line["steps"]]
        sources = [asked[a["request_id"]]["source_sha256"] for a in job["attempts"]]
        assert sources[1:] == _step_outputs(job)[:2]
    assert batch["cost_usd"] == pytest.approx(sum(float(r["cost_usd"]) for r in results))


def test_the_command_line_submits_a_chain_and_shows_each_step_as_it_finishes(
    chain_stack: Running, tmp_path: Any
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(base64.b64decode(data_uri(10).split(",", 1)[1]))

    run = chain_stack.editq(
        "submit", str(photo), "remove the background",
        "--then", "put it on a beach", "--then", "warm colour grade", "--wait",
    )  # fmt: skip

    assert run.returncode == 0, run.stderr[-3000:]
    job_id = run.stdout.splitlines()[0].strip()
    assert "step 1/3 succeeded: remove the background" in run.stderr
    assert "step 2/3 succeeded: put it on a beach" in run.stderr
    shown = chain_stack.editq("jobs", "show", job_id)
    assert shown.returncode == 0, shown.stderr
    for prompt in ("remove the background", "put it on a beach", "warm colour grade"):
        assert prompt in shown.stdout
    assert f"outputs/{job_id}/steps/3/0.jpg" in shown.stdout
