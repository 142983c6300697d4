"""The ops console in a real browser: headless Chromium (Debian's) driven by Playwright.

Against the real processes: operators log in, watch a provider outage, retry the jobs it
failed with a reason, pause a provider and see dispatch stop. A read-only operator cannot
act, and a form posted without its CSRF token is refused. With
``EDITQ_CONSOLE_SCREENSHOTS=<dir>`` each page is saved there as a PNG (the README's).
"""

from __future__ import annotations

import html
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Running, start_stack
from tests.callback_receiver import receiving
from tests.factories import data_uri
from tests.waiting import wait_until
from worker.console.operators import hash_password

pytestmark = [pytest.mark.acceptance, pytest.mark.browser]

PASSWORDS = {"ana": "ana-operates-the-queue", "bo": "bo-only-looks-around"}
ROLES = {"ana": "operate", "bo": "read"}
CHROMIUM_HINT = "`make tools` installs Debian's chromium (as root: apt-get install chromium)"
#: Chromium on a closed network: no first-run, sync, component or background fetches.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(f"no Chromium here, so the console's browser tests cannot run: {CHROMIUM_HINT}")
    return found


@pytest.fixture(scope="module")
def console_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    operators = ";".join(
        f"{name}:{ROLES[name]}:{hash_password(password)}" for name, password in PASSWORDS.items()
    )
    yield from start_stack(
        test_env,
        tmp_path_factory.mktemp("logs"),
        webhooks=True,
        extra_env={
            "EDITQ_CONSOLE_OPERATORS": operators,
            "EDITQ_CONSOLE_SECRET": "console-test-secret-0123456789abcdef",
            # An outage fails its jobs in two attempts, before fal's breaker would hold them.
            "EDITQ_MAX_ATTEMPTS": "2",
            "EDITQ_BREAKER_FAILURES": "50",
            # A producer's endpoint that keeps failing is given up on in two quick tries.
            "EDITQ_CALLBACK_MAX_ATTEMPTS": "2",
            "EDITQ_CALLBACK_BACKOFF_BASE_SECONDS": "0.2",
            "EDITQ_CALLBACK_BACKOFF_MAX_SECONDS": "0.5",
        },
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def _providers_resumed(console_stack: Running) -> Iterator[None]:
    """Whatever a test paused is resumed: the providers' rows are shared by every stack."""
    yield
    for provider in ("fal", "runware", "runflow"):
        assert console_stack.editq("providers", "resume", provider).returncode == 0


def page_for(browser: Any, stack: Running, name: str) -> Any:
    """A fresh browser context, logged in as ``name``."""
    context = browser.new_context(
        base_url=str(stack.api.base_url), viewport={"width": 1366, "height": 800}
    )
    page = context.new_page()
    page.goto("/console")
    assert page.url.endswith("/console/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url("**/console")
    return page


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("EDITQ_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_a_wrong_password_is_refused_and_the_right_one_shows_the_overview(
    browser: Any, console_stack: Running
) -> None:
    context = browser.new_context(base_url=str(console_stack.api.base_url))
    page = context.new_page()
    page.goto("/console/login")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", "not her password")
    page.click("button[type=submit]")
    assert "do not match an operator" in page.inner_text("[role=alert]")
    shot(page, "login")
    cookie = next(c for c in context.cookies() if c["name"] == "editq_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page = page_for(browser, console_stack, "ana")
    rows = page.locator("table.providers tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.provider)")) == [
        "fal", "runflow", "runware",
    ]  # fmt: skip
    assert "ana (operate)" in page.inner_text("header")


def test_an_outage_s_failures_are_found_dry_run_retried_with_a_reason_and_succeed(
    browser: Any, console_stack: Running
) -> None:
    stack = console_stack
    stack.faults("fal", rate_5xx=1.0)
    ids = [stack.submit("fal", metadata={"run": "outage"})["id"] for _ in range(3)]
    for job_id in ids:
        assert stack.wait_terminal(job_id, timeout=60)["error"]["code"] == "provider_unavailable"
    stack.faults("fal", rate_5xx=0.0)

    page = page_for(browser, stack, "ana")
    shot(page, "overview")
    page.goto("/console/jobs")
    page.select_option("select[name=state]", "failed")
    page.fill("input[name=error_code]", "provider_unavailable")
    page.fill("input[name=metadata]", "run=outage")
    page.click("form.filters button[type=submit]")
    assert page.locator("table.jobs tbody tr").count() == 3
    shot(page, "jobs")
    page.click("#bulk-retry button")
    assert page.inner_text("#matched") == "3"
    shot(page, "retry")
    page.fill("input[name=reason]", "fal outage 02:00-02:40")
    page.click("form button:has-text('Retry 3 job(s)')")
    assert page.inner_text("#acted") == "3"

    # Watched live: the list of the outage's jobs turns green without a reload.
    page.goto("/console/jobs?metadata=run%3Doutage")
    page.wait_for_function(
        "[...document.querySelectorAll('table.jobs td.state')]"
        ".filter(td => td.textContent === 'succeeded').length === 3",
        timeout=60_000,
    )
    page.goto(f"/console/jobs/{ids[0]}")
    assert page.inner_text("#state") == "succeeded"
    retry = page.locator("table.events tr", has_text="retry")
    assert retry.locator(".actor").inner_text() == "console:ana"
    assert retry.locator(".reason").inner_text() == "fal outage 02:00-02:40"
    assert page.locator(".outputs img").count() == 1
    shot(page, "job")


def test_a_paused_provider_is_sent_nothing_until_resumed_live_on_the_overview(
    browser: Any, console_stack: Running
) -> None:
    stack = console_stack
    page = page_for(browser, stack, "ana")
    fal = page.locator("tr[data-provider=fal]")
    fal.locator("input[name=reason]").fill("fal degraded")
    fal.locator("form[action$='/pause'] button").click()
    page.wait_for_url("**/console?notice=*")
    assert "paused by console:ana: fal degraded" in fal.locator(".state").inner_text()

    queued = int(fal.locator(".queued").inner_text())
    job = stack.submit("fal")
    # Dispatch stops: the job stays queued, and the live overview counts it.
    wait_until(
        lambda: fal.locator(".queued").inner_text() == str(queued + 1),
        timeout=15,
        what="the overview to show the queued job without a reload",
    )
    assert stack.job(job["id"])["state"] == "queued"

    fal.locator("form[action$='/resume'] button").click()
    assert stack.wait_terminal(job["id"])["state"] == "succeeded"


def test_a_read_only_operator_sees_everything_and_may_do_nothing(
    browser: Any, console_stack: Running
) -> None:
    page = page_for(browser, console_stack, "bo")
    assert page.locator("form[action$='/pause']").count() == 0
    token = page.locator("header input[name=csrf_token]").input_value()
    answer = page.request.post(
        "/console/providers/fal/pause", form={"csrf_token": token, "reason": "trying"}
    )
    assert answer.status == 403
    assert "read-only operator" in answer.text()
    assert console_stack.api.get("/v1/providers").json()[0]["paused_at"] is None


def test_a_post_without_its_csrf_token_is_refused(browser: Any, console_stack: Running) -> None:
    page = page_for(browser, console_stack, "ana")
    answer = page.request.post("/console/providers/fal/pause", form={"reason": "forged"})
    assert answer.status == 403
    assert "CSRF" in answer.text()
    wrong = page.request.post(
        "/console/providers/fal/pause", form={"csrf_token": "guessed", "reason": "forged"}
    )
    assert wrong.status == 403
    assert console_stack.api.get("/v1/providers").json()[0]["paused_at"] is None


def submit_batch(stack: Running, rows: int, **query: str) -> str:
    lines = [
        {"external_id": f"SKU-{n}", "image_url": data_uri(n), "prompt": "Put it on marble",
         "providers": ["fal"]}
        for n in range(rows)
    ]  # fmt: skip
    batch_id: str = stack.post_batch(lines, **query)["id"]
    return batch_id


def test_a_batch_s_progress_updates_live_and_links_its_result_files(
    browser: Any, console_stack: Running
) -> None:
    stack = console_stack
    stack.faults("fal", latency=1.5)
    batch_id = submit_batch(stack, 4, budget_usd="5")
    page = page_for(browser, stack, "ana")
    page.goto("/console/batches")
    assert page.locator(f"a[href='/console/batches/{batch_id}']").count() == 1
    shot(page, "batches")
    page.goto(f"/console/batches/{batch_id}")
    assert page.inner_text("#batch-state") in {"running", "finalizing"}
    # No reload: the page's live part follows the batch to its end.
    page.wait_for_function(
        "document.querySelector('#batch-state').textContent === 'completed'", timeout=60_000
    )
    assert "$0.1600 of a $5" in page.inner_text("#live")
    page.reload()
    assert page.locator("a", has_text="results.jsonl").count() == 1
    shot(page, "batch")


def test_an_operator_cancels_a_batch_with_a_reason(browser: Any, console_stack: Running) -> None:
    stack = console_stack
    stack.faults("fal", latency=30)
    batch_id = submit_batch(stack, 3)
    page = page_for(browser, stack, "ana")
    page.goto(f"/console/batches/{batch_id}")
    page.fill("input[name=reason]", "wrong catalog uploaded")
    page.click("text=Cancel the batch")
    page.wait_for_url("**?notice=*")
    jobs = stack.api.get("/v1/jobs", params={"batch_id": batch_id}).json()["jobs"]
    for job in jobs:
        done = stack.wait_terminal(job["id"], timeout=30)
        assert done["state"] == "canceled"
        cancel = next(e for e in done["events"] if e["transition"] == "cancel")
        assert cancel["reason"] == "wrong catalog uploaded"


def test_a_failed_callback_is_listed_and_sent_again(browser: Any, console_stack: Running) -> None:
    stack = console_stack
    secret = stack.stack.env["EDITQ_CALLBACK_SECRET"]
    with receiving(secret, statuses=(500, 500)) as receiver:
        job = stack.submit("fal", callback_url=receiver.url)
        assert stack.wait_terminal(job["id"])["state"] == "succeeded"

        def given_up() -> bool:
            shown = stack.job(job["id"], events=False)["callbacks"]
            return bool(shown) and shown[0]["state"] == "failed"

        wait_until(given_up, timeout=30, what="the callback to be given up on")
        page = page_for(browser, stack, "ana")
        page.goto("/console/callbacks?state=failed")
        row = page.locator("table.callbacks tr", has_text=job["id"])
        assert row.count() == 1
        shot(page, "callbacks")
        page.click("#redeliver button")
        page.wait_for_url("**state=pending**")

        def delivered() -> bool:
            shown = stack.job(job["id"], events=False)["callbacks"]
            return bool(shown[0]["state"] == "delivered")

        wait_until(delivered, timeout=30, what="the callback sent again to be delivered")
        assert [c.status for c in receiver.calls()] == [500, 500, 200]


def test_queued_jobs_are_canceled_by_filter_after_a_dry_run(
    browser: Any, console_stack: Running
) -> None:
    stack = console_stack
    page = page_for(browser, stack, "ana")
    page.locator("tr[data-provider=fal] input[name=reason]").fill("hold fal jobs")
    page.locator("tr[data-provider=fal] form[action$='/pause'] button").click()
    page.wait_for_url("**/console?notice=*")
    ids = [stack.submit("fal", metadata={"run": "mistake"})["id"] for _ in range(2)]
    page.goto("/console/jobs?state=queued&metadata=run%3Dmistake")
    page.click("#bulk-cancel button")
    assert page.inner_text("#matched") == "2"
    assert {stack.job(i)["state"] for i in ids} == {"queued"}  # a dry run changes nothing
    page.fill("input[name=reason]", "submitted by mistake")
    page.click("form button:has-text('Cancel 2 job(s)')")
    assert page.inner_text("#acted") == "2"
    for job_id in ids:
        shown = stack.job(job_id)
        assert shown["state"] == "canceled"
        assert shown["events"][-1]["actor"] == "console:ana"
    page.goto("/console")
    page.locator("tr[data-provider=fal] form[action$='/resume'] button").click()
    page.wait_for_url("**/console?notice=*")


def test_a_filter_it_cannot_read_is_refused_naming_the_field_and_nothing_moves(
    browser: Any, console_stack: Running
) -> None:
    stack = console_stack
    stack.faults("fal", rate_5xx=1.0)
    job = stack.submit("fal", metadata={"run": "unreadable"})
    assert stack.wait_terminal(job["id"], timeout=60)["state"] == "failed"
    stack.faults("fal", rate_5xx=0.0)
    page = page_for(browser, stack, "ana")
    page.goto("/console/jobs?state=failed&since=yesterday")
    assert "since: 'yesterday' is not a time like" in page.inner_text("[role=alert]")
    token = page.locator("header input[name=csrf_token]").input_value()
    answer = page.request.post(
        "/console/jobs/bulk/retry",
        form={"csrf_token": token, "state": "failed", "metadata": "run",
              "confirm": "yes", "reason": "wide by mistake"},
    )  # fmt: skip
    assert answer.status == 422
    assert "Nothing was retried: metadata: 'run' is not key=value" in html.unescape(answer.text())
    assert stack.job(job["id"])["state"] == "failed"
