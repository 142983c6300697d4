"""The ``editq`` command as ops and producers run it, against a running stack."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from tests.acceptance.conftest import Running, start_stack
from tests.factories import data_uri
from tests.waiting import wait_until
from worker.dev.samples import product_photo
from worker.values.canonical import AspectRatio

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def cli_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    # The outage test needs jobs to use up their attempts at fal, not to wait out fal's
    # circuit breaker (the failover tests cover that).
    yield from start_stack(
        test_env,
        tmp_path_factory.mktemp("logs"),
        webhooks=True,
        extra_env={"EDITQ_BREAKER_FAILURES": "1000"},
    )


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "teapot.jpg"
    path.write_bytes(product_photo("teapot", 3))
    return path


def test_submit_a_local_file_and_wait(cli_stack: Running, photo: Path) -> None:
    run = cli_stack.editq("submit", str(photo), "Put the teapot on a wooden table", "--wait")

    assert run.returncode == 0, run.stderr
    job_id = run.stdout.splitlines()[0].strip()
    job = cli_stack.job(job_id)
    assert job["state"] == "succeeded"
    # The file was uploaded to our bucket and the provider read it from a presigned URL.
    assert f"/{cli_stack.stack.env['EDITQ_S3_BUCKET']}/inputs/" in job["input"]["image_url"]
    assert "succeeded" in run.stdout and job["outputs"][0]["key"] in run.stdout
    events = [e["actor"] for e in job["events"] if e["transition"] == "create"]
    assert events == ["cli"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--aspect-ratio", "5:4"], "--aspect-ratio"),
        (["--num-images", "9"], "num_images"),
        (["--guidance-scale", "50"], "guidance_scale"),
        (["--output-format", "gif"], "--output-format"),
        (["--metadata", "no-equals-sign"], "--metadata"),
    ],
)
def test_bad_options_exit_2_naming_the_field_and_submit_nothing(
    cli_stack: Running, photo: Path, args: list[str], field: str
) -> None:
    before = cli_stack.api.get("/v1/jobs", params={"limit": 500}).json()["jobs"]
    run = cli_stack.editq("submit", str(photo), "make it pop", *args)
    assert run.returncode == 2
    assert field in run.stderr
    assert cli_stack.api.get("/v1/jobs", params={"limit": 500}).json()["jobs"] == before


def test_a_bad_choice_exits_2_naming_every_choice(cli_stack: Running, photo: Path) -> None:
    run = cli_stack.editq("submit", str(photo), "make it pop", "--aspect-ratio", "5:4")
    assert run.returncode == 2
    assert "--aspect-ratio" in run.stderr
    assert all(f"'{ratio}'" in run.stderr for ratio in get_args(AspectRatio))


def test_a_missing_file_exits_2(cli_stack: Running, tmp_path: Path) -> None:
    run = cli_stack.editq("submit", str(tmp_path / "nope.jpg"), "make it pop")
    assert run.returncode == 2
    assert "source" in run.stderr


def test_jobs_show_of_an_unknown_id_exits_3(cli_stack: Running) -> None:
    run = cli_stack.editq("jobs", "show", "00000000-0000-4000-8000-000000000000")
    assert run.returncode == 3
    assert "job_not_found" in run.stderr


def test_list_cancel_and_retry(cli_stack: Running) -> None:
    cli_stack.faults(latency=30)
    job = cli_stack.submit(external_id="SKU-CLI")
    wait_until(lambda: cli_stack.job(job["id"])["state"] == "running", what="job to run")

    listed = cli_stack.editq("jobs", "list", "--state", "running")
    assert listed.returncode == 0 and job["id"] in listed.stdout

    canceled = cli_stack.editq("jobs", "cancel", job["id"], "--reason", "wrong photo")
    assert canceled.returncode == 0 and "canceled" in canceled.stdout
    again = cli_stack.editq("jobs", "cancel", job["id"])
    assert again.returncode == 5 and "invalid_transition" in again.stderr

    cli_stack.faults(latency=0.3)
    retried = cli_stack.editq("jobs", "retry", job["id"], "--reason", "photo fixed")
    assert retried.returncode == 0 and "queued" in retried.stdout
    done = cli_stack.wait_terminal(job["id"])
    assert done["state"] == "succeeded"
    reasons = [(e["transition"], e["actor"], e["reason"]) for e in done["events"]]
    assert ("cancel", "cli", "wrong photo") in reasons
    assert ("retry", "cli", "photo fixed") in reasons

    shown = cli_stack.editq("jobs", "show", job["id"])
    assert shown.returncode == 0
    assert "succeeded" in shown.stdout and "history" in shown.stdout


def test_after_an_outage_a_retry_by_filter_brings_every_failed_job_back(
    cli_stack: Running,
) -> None:
    cli_stack.faults("fal", rate_5xx=1.0)
    jobs = [cli_stack.submit("fal", external_id=f"SKU-OUT-{i}") for i in range(6)]
    failed = [cli_stack.wait_terminal(job["id"], timeout=90) for job in jobs]
    assert {j["state"] for j in failed} == {"failed"}
    assert {j["error"]["code"] for j in failed} == {"provider_unavailable"}
    cli_stack.faults("fal", rate_5xx=0.0)  # the outage is over

    dry = cli_stack.editq("jobs", "retry", "--error-code", "provider_unavailable", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would retry 6 job(s)" in dry.stdout
    assert all(cli_stack.job(j["id"])["state"] == "failed" for j in jobs)

    done = cli_stack.editq(
        "jobs", "retry", "--error-code", "provider_unavailable", "--reason", "fal outage"
    )
    assert done.returncode == 0, done.stderr
    assert "retried 6 job(s)" in done.stdout

    after = [cli_stack.wait_terminal(job["id"]) for job in jobs]
    assert {j["state"] for j in after} == {"succeeded"}
    for job in after:
        retry = [e for e in job["events"] if e["transition"] == "retry"]
        assert [(e["actor"], e["reason"]) for e in retry] == [("cli", "fal outage")]


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "retry"],
        ["jobs", "retry", "--state", "succeeded", "--dry-run"],
        ["jobs", "retry", "--error-code", "provider_unavailable"],
    ],
    ids=["no-filter", "bad-state", "no-reason"],
)
def test_a_retry_by_filter_needs_a_filter_a_retryable_state_and_a_reason(
    cli_stack: Running, args: list[str]
) -> None:
    run = cli_stack.editq(*args)
    assert run.returncode == 2
    assert "invalid" in run.stderr


def editq_narrow(stack: Running, *args: str) -> subprocess.CompletedProcess[str]:
    """``editq <args>`` on a 60-column console, as a small terminal (or a pipe, 80) gives."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**stack.stack.env, "COLUMNS": "60"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def without_urls(value: Any) -> Any:
    """The value with every presigned ``url`` dropped, at any depth (signed at each call)."""
    if isinstance(value, dict):
        return {k: without_urls(v) for k, v in value.items() if k != "url"}
    if isinstance(value, list):
        return [without_urls(v) for v in value]
    return value


def as_json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def two_outputs(cli_stack: Running) -> dict[str, Any]:
    """A succeeded job with two outputs, as the API shows it."""
    job = cli_stack.submit(input={"num_images": 2})
    done = cli_stack.wait_terminal(job["id"])
    assert done["state"] == "succeeded" and len(done["outputs"]) == 2
    return done


def test_json_lists_and_shows_jobs_with_full_ids_attempts_outputs_and_history(
    cli_stack: Running, two_outputs: dict[str, Any]
) -> None:
    listed = as_json(cli_stack.editq("jobs", "list", "--json"))
    job_id = two_outputs["id"]
    assert job_id in [j["id"] for j in listed["jobs"]]
    datetime.fromisoformat(listed["jobs"][0]["created_at"])

    shown = as_json(cli_stack.editq("jobs", "show", job_id, "--json"))
    assert shown["id"] == job_id and shown["state"] == "succeeded"
    assert [a["outcome"] for a in shown["attempts"]] == ["succeeded"]
    assert shown["events"] and shown["events"][0]["transition"] == "create"
    # One shape: the API's answer, but for the presigned URLs (signed at each call).
    assert without_urls(shown) == without_urls(cli_stack.job(job_id))
    for output in shown["outputs"]:
        image = httpx.get(output["url"], timeout=30)
        assert hashlib.sha256(image.content).hexdigest() == output["sha256"]


def test_tables_on_a_narrow_console_keep_every_id_and_url_whole(
    cli_stack: Running, two_outputs: dict[str, Any]
) -> None:
    ids = [j["id"] for j in as_json(cli_stack.editq("jobs", "list", "--json"))["jobs"]]
    table = editq_narrow(cli_stack, "jobs", "list")
    assert table.returncode == 0, table.stderr
    assert all(job_id in table.stdout for job_id in ids)

    shown = editq_narrow(cli_stack, "jobs", "show", two_outputs["id"])
    assert shown.returncode == 0, shown.stderr
    urls = [ln.split()[1] for ln in shown.stdout.splitlines() if ln.strip().startswith("url ")]
    digests = [hashlib.sha256(httpx.get(url, timeout=30).content).hexdigest() for url in urls]
    assert digests == [o["sha256"] for o in two_outputs["outputs"]]


def test_download_writes_each_output_named_by_the_job_id(
    cli_stack: Running, two_outputs: dict[str, Any], tmp_path: Path
) -> None:
    job_id = two_outputs["id"]
    run = cli_stack.editq("jobs", "download", job_id, "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    for i, output in enumerate(two_outputs["outputs"]):
        path = tmp_path / "out" / f"{job_id}-{i}{Path(output['key']).suffix}"
        assert str(path) in run.stdout
        assert hashlib.sha256(path.read_bytes()).hexdigest() == output["sha256"]


def test_download_of_a_job_without_outputs_exits_5_and_of_an_unknown_one_3(
    cli_stack: Running, tmp_path: Path
) -> None:
    cli_stack.faults(latency=30)
    job = cli_stack.submit()
    assert cli_stack.api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200

    canceled = cli_stack.editq("jobs", "download", job["id"], "-o", str(tmp_path))
    assert canceled.returncode == 5
    assert "invalid_transition" in canceled.stderr and "canceled" in canceled.stderr
    assert len(canceled.stderr.strip().splitlines()) == 1
    unknown = cli_stack.editq("jobs", "download", str(uuid.uuid4()), "-o", str(tmp_path))
    assert unknown.returncode == 3 and "job_not_found" in unknown.stderr
    assert list(tmp_path.iterdir()) == []


def test_submit_takes_every_parameter_and_an_idempotency_key_gives_back_the_job(
    cli_stack: Running,
) -> None:
    key = f"cli-{uuid.uuid4()}"
    args = (
        "submit", data_uri(7), "Put the mug on a marble counter", "--provider", "fal",
        "--aspect-ratio", "1:1", "--guidance-scale", "3.5", "--seed", "42",
        "--safety-tolerance", "2", "--no-enhance-prompt", "--output-format", "png",
        "--metadata", "sku=MUG-7", "--metadata", "note=a=b", "--idempotency-key", key,
    )  # fmt: skip
    first = cli_stack.editq(*args)
    assert first.returncode == 0, first.stderr
    again = cli_stack.editq(*args)
    assert again.returncode == 0, again.stderr
    job_id = first.stdout.strip()
    assert again.stdout.strip() == job_id

    job = as_json(cli_stack.editq("jobs", "show", job_id, "--json"))
    assert job["metadata"] == {"sku": "MUG-7", "note": "a=b"}
    edit = job["input"]
    assert (edit["guidance_scale"], edit["seed"], edit["aspect_ratio"]) == (3.5, 42, "1:1")
    assert (edit["safety_tolerance"], edit["enhance_prompt"]) == (2, False)
    assert edit["output_format"] == "png" and job["providers"] == ["fal"]


@pytest.mark.parametrize(
    ("args", "items"),
    [(["batch", "list"], "batches"), (["callbacks", "list"], "callbacks"), (["providers"], None)],
)
def test_every_other_list_prints_one_json_document(
    cli_stack: Running, args: list[str], items: str | None
) -> None:
    document = as_json(cli_stack.editq(*args, "--json"))
    if items is None:
        assert {p["name"] for p in document} == {"fal", "runware", "runflow"}
    else:
        assert isinstance(document[items], list)


def test_providers_and_schedulers_name_the_scheduler_that_leads(cli_stack: Running) -> None:
    # The scheduler leads from its first tick, which may come after the stack is up.
    seen = wait_until(
        lambda: (found := as_json(cli_stack.editq("schedulers", "--json")))["leader"] and found,
        what="the scheduler's first tick",
    )
    [leader] = [s for s in seen["schedulers"] if s["leads"]]
    assert seen["leader"] == leader["id"] and leader["wakeups"] == "listen"
    assert leader["pid"] == cli_stack.stack.procs["scheduler"].pid

    shown = cli_stack.editq("providers")

    assert shown.returncode == 0, shown.stderr
    assert leader["id"] in shown.stdout and "leads" in shown.stdout
    assert "no scheduler leads" not in shown.stderr
