"""A chain's steps: what each one runs with, what it edits, and what makes one invalid."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from worker.pipeline.outputs import output_key
from worker.values import chain
from worker.values.canonical import EditInput
from worker.values.chain import PENDING_SOURCE, StepIn

FIRST = EditInput(
    prompt="remove the background",
    image_url="https://example.com/a.jpg",
    num_images=2,
    output_format="png",
    seed=7,
)


def _stored(steps: list[StepIn]) -> list[dict[str, object]]:
    return [chain.stored(p, ["fal"]) for p in chain.plan(FIRST, steps)]


def test_a_step_carries_over_every_parameter_it_does_not_change() -> None:
    second, third = chain.plan(
        FIRST,
        [StepIn(prompt="on a beach", num_images=1), StepIn(prompt="warm grade", seed=None)],
    )
    assert (second.edit.num_images, second.edit.output_format, second.edit.seed) == (1, "png", 7)
    # An explicit null clears a parameter that may be unset; the rest still carries over.
    assert (third.edit.num_images, third.edit.output_format, third.edit.seed) == (1, "png", None)
    assert second.edit.image_url == PENDING_SOURCE


def test_a_later_step_is_submitted_with_the_source_it_is_given() -> None:
    steps = _stored([StepIn(prompt="on a beach", use_output=1, providers=["runware"])])
    first = FIRST.model_dump(exclude_none=True)
    assert chain.edit(first, steps, 1).image_url == FIRST.image_url
    second = chain.edit(first, steps, 2, "https://bucket/outputs/j/1.png?sig")
    assert (second.prompt, second.image_url) == ("on a beach", "https://bucket/outputs/j/1.png?sig")
    assert chain.source_output(steps, 2) == 1
    assert chain.providers_of(steps, 2) == ("fal",)
    assert "image_url" not in chain.request(first, steps, 2)


def test_a_step_may_edit_only_an_output_the_step_before_makes() -> None:
    planned = chain.plan(
        FIRST, [StepIn(prompt="a", use_output=1, num_images=1), StepIn(prompt="b", use_output=1)]
    )
    (problem,) = chain.problems(FIRST, planned)
    assert (problem.field, problem.rule) == ("steps.1.use_output", "output_not_made")
    assert "step 3 edits output 1 of step 2, which makes 1 output(s)" in problem.message


def test_a_chain_has_at_most_ten_steps() -> None:
    planned = chain.plan(FIRST, [StepIn(prompt=f"s{i}") for i in range(chain.MAX_STEPS)])
    assert [p.rule for p in chain.problems(FIRST, planned)] == ["too_long"]
    assert chain.problems(FIRST, planned[:-1]) == []


def test_a_step_names_its_prompt_and_no_source_of_its_own() -> None:
    with pytest.raises(ValidationError):
        StepIn.model_validate({"prompt": "x", "image_url": "https://example.com/b.jpg"})
    with pytest.raises(ValidationError):
        StepIn.model_validate({"prompt": "  "})
    with pytest.raises(ValidationError):
        StepIn.model_validate({"prompt": "x", "providers": ["fal", "fal"]})


def test_later_steps_keep_their_outputs_apart_from_the_first_steps() -> None:
    job = uuid.uuid4()
    assert output_key(job, 1, 0, "png") == f"outputs/{job}/0.png"
    assert output_key(job, 3, 1, "jpg") == f"outputs/{job}/steps/3/1.jpg"
