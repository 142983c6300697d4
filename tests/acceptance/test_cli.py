"""The ``editq`` command as ops and producers run it, against a running stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import Running, start_stack
from tests.waiting import wait_until
from worker.dev.samples import product_photo

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
        (["--aspect-ratio", "5:4"], "aspect_ratio"),
        (["--num-images", "9"], "num_images"),
        (["--output-format", "gif"], "output_format"),
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
