"""The quality gate on the real processes: every provider's bad outputs, each policy.

Each emulator is told to misbehave in its own protocol's fields (fal's and Runflow's
``has_nsfw_concepts``, Runware's ``NSFWContent``); the job must end as the policy says, and
the emulators' counters must show exactly the attempts editq recorded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PROVIDERS, Running, start_stack
from tests.factories import data_uri
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance

#: The provider each job falls back to.
NEXT = {"fal": "runware", "runware": "runflow", "runflow": "fal"}


@pytest.fixture(scope="module")
def quality_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    settings = {"EDITQ_PROVIDERS": "fal,runware,runflow"}
    yield from start_stack(
        test_env, tmp_path_factory.mktemp("logs"), webhooks=True, extra_env=settings
    )


def accepted(stack: Running) -> dict[str, int]:
    """How many requests each emulator accepted (and so billed)."""
    return {p: stack.stats(p)["accepted"] for p in PROVIDERS}


def paid_since(stack: Running, before: dict[str, int]) -> dict[str, int]:
    now = accepted(stack)
    return {p: now[p] - before[p] for p in PROVIDERS if now[p] != before[p]}


def run_job(stack: Running, provider: str, **body: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """Submit a job listing ``provider`` then its fallback; the finished job, and who was paid."""
    before = accepted(stack)
    job = stack.submit(providers=[provider, NEXT[provider]], **body)
    done = stack.wait_terminal(job["id"], timeout=60)
    return done, paid_since(stack, before)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_blacked_out_flagged_output_fails_as_moderated_and_is_not_paid_for_again(
    quality_stack: Running, provider: str
) -> None:
    quality_stack.faults(provider, rate_blackout=1.0)
    done, paid = run_job(quality_stack, provider)
    assert (done["state"], done["error"]["code"]) == ("failed", "content_moderated")
    [attempt] = done["attempts"]
    assert attempt["provider"] == provider and attempt["cost_usd"] > 0
    [report] = attempt["quality"]
    assert report["failed"] == "moderated" and report["checks"]["blank"] == "fail"
    assert "moderated" in report["flags"]
    assert report["key"].startswith(f"outputs/{done['id']}/rejected/1/")
    assert done["outputs"] == []
    assert paid == {provider: 1}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_flagged_output_that_is_not_black_is_moderated_too(
    quality_stack: Running, provider: str
) -> None:
    quality_stack.faults(provider, rate_flagged=1.0)
    done, paid = run_job(quality_stack, provider)
    assert done["error"]["code"] == "content_moderated"
    [report] = done["attempts"][0]["quality"]
    assert report["checks"]["blank"] == "pass" and report["checks"]["moderated"] == "fail"
    assert paid == {provider: 1}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unchanged_output_is_tried_once_more_on_the_next_provider_and_succeeds_there(
    quality_stack: Running, provider: str
) -> None:
    quality_stack.faults(provider, rate_unchanged=1.0)
    done, paid = run_job(quality_stack, provider)
    assert done["state"] == "succeeded" and done["provider"] == NEXT[provider]
    first, second = done["attempts"]
    assert (first["provider"], first["error"]["code"]) == (provider, "quality_unchanged")
    assert first["quality"][0]["scores"]["distance"] <= 0.12
    assert second["outcome"] == "succeeded"
    [output] = done["outputs"]
    assert output["quality"]["passed"] is True and output["quality"]["failed"] is None
    # Both attempts were paid for, and both count in the job's cost.
    assert done["cost_usd"] == pytest.approx(first["cost_usd"] + second["cost_usd"])
    assert paid == {provider: 1, NEXT[provider]: 1}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_sized_output_fails_under_on_failure_fail(
    quality_stack: Running, provider: str
) -> None:
    quality_stack.faults(provider, rate_wrong_size=1.0)
    done, paid = run_job(
        quality_stack,
        provider,
        input={"image_url": data_uri(), "aspect_ratio": "16:9"},
        quality={"on_failure": "fail"},
    )
    assert (done["state"], done["error"]["code"]) == ("failed", "quality_wrong_size")
    assert "not the" in done["error"]["message"]
    [report] = done["attempts"][0]["quality"]
    assert report["scores"]["width"] == report["scores"]["height"]
    assert paid == {provider: 1}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_accept_succeeds_with_the_failed_check_shown_as_a_flag(
    quality_stack: Running, provider: str
) -> None:
    quality_stack.faults(provider, rate_unchanged=1.0)
    done, paid = run_job(quality_stack, provider, quality={"on_failure": "accept"})
    assert done["state"] == "succeeded" and done["provider"] == provider
    [output] = done["outputs"]
    assert output["quality"]["failed"] == "unchanged"
    assert "unchanged" in output["quality"]["flags"]
    assert paid == {provider: 1}
    shown = quality_stack.editq("jobs", "show", done["id"])
    assert "failed unchanged" in shown.stdout and "flags: unchanged" in shown.stdout


def test_a_batchs_results_carry_every_outputs_scores(quality_stack: Running) -> None:
    rows = [
        {"external_id": f"sku-{i}", "image_url": data_uri(i), "prompt": "on marble"}
        for i in range(3)
    ]
    batch_id = quality_stack.post_batch(rows, providers=["runflow"], quality_on_failure="accept")[
        "id"
    ]
    wait_until(
        lambda: quality_stack.api.get(f"/v1/batches/{batch_id}").json()["state"] == "completed",
        timeout=60,
        what="the batch to complete",
    )
    files = quality_stack.api.get(f"/v1/batches/{batch_id}/results").json()
    lines = [json.loads(x) for x in io.StringIO(httpx.get(files["results"]["url"]).text)]
    assert len(lines) == 3
    for result in lines:
        [output] = result["outputs"]
        assert output["quality"]["passed"] is True
        assert {"distance", "color_difference", "stddev", "width"} <= output["quality"][
            "scores"
        ].keys()
