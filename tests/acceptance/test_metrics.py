"""Metrics from every process of a running stack, and the dashboard and alerts built on them.

The stack runs a success with a producer callback, a moderated failure and a forged
webhook; then the API's ``/metrics``, the worker's and the scheduler's own ports are
scraped as Prometheus would scrape them.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import Running, start_stack
from tests.callback_receiver import receiving
from tests.waiting import wait_until
from worker.dev.services.home import choose_ports

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "editq.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMTOOL_HINT = "`make tools` puts it in .tools/bin (from Debian's prometheus package)"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=True)


def scrape(url: str) -> Samples:
    """Every sample at ``url``, keyed by its name and labels."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def endpoints(stack: Running) -> dict[str, str]:
    env = stack.stack.env
    return {
        "api": str(stack.api.base_url.join("/metrics")),
        "worker": f"http://127.0.0.1:{env['EDITQ_WORKER_METRICS_PORT']}/metrics",
        "scheduler": f"http://127.0.0.1:{env['EDITQ_SCHEDULER_METRICS_PORT']}/metrics",
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture(scope="module")
def api_before(metrics_stack: Running) -> Samples:
    """The API's metrics before anything runs on this stack.

    The database is shared with the other modules' stacks: its gauges are read as deltas.
    """
    return scrape(endpoints(metrics_stack)["api"])


@pytest.fixture(scope="module")
def scraped(metrics_stack: Running, api_before: Samples) -> dict[str, Samples]:
    """Each process's metrics after a success with a callback, a failure, a forgery."""
    stack = metrics_stack
    urls = endpoints(stack)
    with receiving(stack.stack.env["EDITQ_CALLBACK_SECRET"]) as receiver:
        done = stack.wait_terminal(stack.submit("fal", callback_url=receiver.url)["id"])
        assert done["state"] == "succeeded", done["error"]
        wait_until(receiver.calls, timeout=30, what="the producer callback")
    stack.faults("fal", moderated_words=["lagoon"])
    try:
        failed = stack.wait_terminal(
            stack.submit("fal", input={"prompt": "Put it by a lagoon"})["id"]
        )
    finally:
        stack.faults("fal", moderated_words=[])
    assert failed["state"] == "failed"
    forged = stack.api.post("/v1/webhooks/fal", json={"request_id": "x"})
    assert forged.status_code == 401
    # The worker counts the callback's verdict after the receiver has answered it.
    wait_until(
        lambda: sample(scrape(urls["worker"]), "editq_callbacks_total", verdict="delivered"),
        timeout=30,
        what="the delivered callback in the worker's metrics",
    )
    return {name: scrape(url) for name, url in urls.items()}


def total(scraped: dict[str, Samples], name: str, **labels: str) -> float:
    """``name`` summed over every process, as a dashboard sums it."""
    return sum(sample(samples, name, **labels) for samples in scraped.values())


def test_jobs_attempts_spend_and_callbacks_are_counted_where_they_happen(
    scraped: dict[str, Samples],
) -> None:
    succeeded = {"provider": "fal", "state": "succeeded", "error_code": ""}
    # Only a worker stores outputs, so a success is counted there.
    assert sample(scraped["worker"], "editq_jobs_finished_total", **succeeded) == 1
    # The moderation came by webhook: the API that took it failed the job.
    failed = {"provider": "fal", "state": "failed", "error_code": "content_moderated"}
    assert total(scraped, "editq_jobs_finished_total", **failed) == 1
    assert total(scraped, "editq_attempts_total", provider="fal", outcome="succeeded") == 1
    assert total(scraped, "editq_attempts_total", provider="fal", outcome="failed") == 1
    assert total(scraped, "editq_spend_usd_total", provider="fal") == pytest.approx(0.04)
    assert sample(scraped["worker"], "editq_finalize_seconds_count", provider="fal") == 1
    assert sample(scraped["worker"], "editq_job_seconds_count", provider="fal") == 1
    assert sample(scraped["worker"], "editq_callbacks_total", event="job.succeeded") == 1


def test_the_scheduler_times_the_queue_and_the_api_the_provider(
    scraped: dict[str, Samples],
) -> None:
    # Only the scheduler claims: the two jobs, each once.
    assert sample(scraped["scheduler"], "editq_queue_wait_seconds_count", provider="fal") == 2
    # Results came by webhook, which the API turns into begin_finalize.
    assert sample(scraped["api"], "editq_provider_seconds_count", provider="fal") >= 1
    assert sample(scraped["api"], "editq_webhooks_total", provider="fal", result="rejected") == 1


def test_the_api_reads_the_operators_gauges_from_the_database(
    scraped: dict[str, Samples], api_before: Samples
) -> None:
    api, before = scraped["api"], api_before

    def grew(name: str, **labels: str) -> float:
        return sample(api, name, **labels) - sample(before, name, **labels)

    assert sample(api, "editq_provider_breaker", provider="fal", state="closed") == 1
    assert sample(api, "editq_provider_breaker", provider="fal", state="open") == 0
    assert sample(api, "editq_provider_capacity", provider="fal") > 0
    assert grew("editq_jobs", state="succeeded") == 1
    assert grew("editq_jobs", state="failed") == 1
    assert grew("editq_batches_running") == 0
    for gauge in ("editq_queued_jobs", "editq_oldest_queued_seconds", "editq_callbacks_pending"):
        assert any(name == gauge for name, _ in api), gauge


def referenced(text: str) -> set[str]:
    """The editq metric names an expression file uses."""
    return set(re.findall(r"\beditq_[a-z_]+", text))


def test_every_metric_the_dashboard_and_the_alerts_use_is_exported(
    scraped: dict[str, Samples],
) -> None:
    exported = {name for samples in scraped.values() for name, _ in samples}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    used = referenced("\n".join(expressions)) | referenced(ALERTS.read_text())
    assert len(used) >= 15
    assert sorted(used - exported) == []


def promtool() -> str | None:
    found = shutil.which("promtool")
    local = ROOT / ".tools" / "bin" / "promtool"
    return found or (str(local) if local.exists() else None)


def test_the_alert_rules_pass_promtool() -> None:
    tool = promtool()
    if tool is None:
        pytest.fail(f"promtool is not installed, so the alert rules are unchecked: {PROMTOOL_HINT}")
    checked = subprocess.run(
        [tool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_a_prefork_worker_serves_what_its_children_counted(
    metrics_stack: Running, scraped: dict[str, Samples], tmp_path: Path
) -> None:
    # Last in this module: it replaces the stack's worker with a prefork one.
    stack = metrics_stack.stack
    stack.kill("worker", signal.SIGTERM)
    stack.procs["worker"].wait(30)
    port = choose_ports(["metrics"], {})["metrics"]
    stack.start(
        "prefork-worker",
        ["worker", "--pool", "prefork", "--concurrency", "2"],
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "EDITQ_WORKER_METRICS_PORT": str(port)},
    )
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: _answers(url), timeout=30, what="the prefork worker's metrics port")
    for _ in range(2):
        done = metrics_stack.wait_terminal(metrics_stack.submit("fal")["id"])
        assert done["state"] == "succeeded", done["error"]

    succeeded = {"provider": "fal", "state": "succeeded", "error_code": ""}
    assert sample(scrape(url), "editq_jobs_finished_total", **succeeded) == 2


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
