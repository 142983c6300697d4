"""Multi-turn edit chains: a job's steps, each one editing an output of the step before.

Every job is a chain of one or more steps. Step 1 is the job's ``input``, the canonical
request. Each entry of the job's ``steps`` is the step after: its own ``prompt``, any
canonical parameter that changes from the step before (the others carry over), which output
of the step before it edits (``use_output``, default 0), and optionally its own
``providers``. A job without ``steps`` is a one-step chain.

The source image of a later step is never named by the producer: it is the chosen output of
the step before, as stored in our bucket, handed to the provider as a fresh presigned GET
URL when the step is submitted (never the provider's own expiring URL).

Steps are numbered from 1, like attempts; ``steps[0]`` of the request body is step 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.values.canonical import AspectRatio, EditInput, Prompt, ProviderOrder
from worker.values.records import JobRecord

#: Most steps one chain may have, its first included.
MAX_STEPS = 10

#: Stands in for a later step's source until it is submitted (a reserved, unresolvable
#: name: were it ever sent, the provider would fail to download it rather than edit
#: something else).
PENDING_SOURCE = "https://previous-step-output.invalid/"

#: The canonical parameters a step may change; every other one carries over.
CARRIED = tuple(f for f in EditInput.model_fields if f not in {"prompt", "image_url"})


class StepIn(BaseModel):
    """One step after the first, as a producer writes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Prompt
    #: Which output of the step before this one edits (0 is the first).
    use_output: int = Field(default=0, ge=0, le=3)
    #: This step's provider order; the step before's when left out.
    providers: ProviderOrder | None = None
    aspect_ratio: AspectRatio | None = None
    num_images: int | None = Field(default=None, ge=1, le=4)
    guidance_scale: float | None = Field(default=None, ge=1, le=20)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    output_format: Literal["jpeg", "png"] | None = None
    safety_tolerance: int | None = Field(default=None, ge=1, le=6)
    enhance_prompt: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The canonical parameters this step sets; an explicit null puts one back to its
        default (``aspect_ratio``: follow the source; ``num_images``: 1)."""
        return {
            name: _or_default(name, getattr(self, name))
            for name in CARRIED
            if name in self.model_fields_set
        }


def _or_default(name: str, value: Any) -> Any:
    return EditInput.model_fields[name].default if value is None else value


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """A later step with every parameter it runs with, the ones carried over included."""

    edit: EditInput
    use_output: int
    #: The step's own provider order; None: the step before's.
    providers: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule a chain breaks: the body field, the rule, and in words."""

    field: str
    rule: str
    message: str


def plan(first: EditInput, steps: Sequence[StepIn]) -> list[PlannedStep]:
    """Each later step with its parameters carried over from the step before."""
    planned: list[PlannedStep] = []
    before = first
    for step in steps:
        values = {**before.model_dump(exclude={"prompt", "image_url"}), **step.changes()}
        edit = EditInput.model_validate(
            {**values, "prompt": step.prompt, "image_url": PENDING_SOURCE}
        )
        providers = tuple(step.providers) if step.providers is not None else None
        planned.append(PlannedStep(edit, step.use_output, providers))
        before = edit
    return planned


def problems(first: EditInput, planned: Sequence[PlannedStep]) -> list[Problem]:
    """What is wrong with a chain: too many steps, or a step editing an output not made."""
    found: list[Problem] = []
    if len(planned) + 1 > MAX_STEPS:
        found.append(
            Problem(
                "steps",
                "too_long",
                f"a chain has at most {MAX_STEPS} steps, the first included; "
                f"this one has {len(planned) + 1}",
            )
        )
    made = first.num_images
    for i, step in enumerate(planned):
        if step.use_output >= made:
            found.append(
                Problem(
                    f"steps.{i}.use_output",
                    "output_not_made",
                    f"step {i + 2} edits output {step.use_output} of step {i + 1}, "
                    f"which makes {made} output(s), numbered from 0",
                )
            )
        made = step.edit.num_images
    return found


def stored(planned: PlannedStep, providers: Sequence[str]) -> dict[str, Any]:
    """A later step as the job row keeps it: its prompt, parameters, source and providers."""
    return {
        **planned.edit.model_dump(mode="json", exclude_none=True, exclude={"image_url"}),
        "use_output": planned.use_output,
        "providers": list(providers),
    }


def request(
    first: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], step: int
) -> dict[str, Any]:
    """Step ``step``'s canonical request; a later step's lacks its ``image_url``."""
    if step == 1:
        return dict(first)
    kept = steps[step - 2]
    return {k: v for k, v in kept.items() if k not in {"use_output", "providers"}}


def edit(
    first: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    step: int,
    source_url: str | None = None,
) -> EditInput:
    """Step ``step`` as the provider is asked for it.

    A later step's source is ``source_url`` (the presigned GET of the output it edits);
    without one it is :data:`PENDING_SOURCE`, good for everything but the submit.
    """
    values = request(first, steps, step)
    if step > 1:
        values["image_url"] = source_url or PENDING_SOURCE
    return EditInput.model_validate(values)


def source_output(steps: Sequence[Mapping[str, Any]], step: int) -> int:
    """Which output of step ``step - 1`` step ``step`` edits."""
    return int(steps[step - 2].get("use_output", 0))


def providers_of(steps: Sequence[Mapping[str, Any]], step: int) -> tuple[str, ...]:
    """The provider order step ``step`` (a later one) runs on."""
    return tuple(steps[step - 2]["providers"])


def job_edit(job: JobRecord, source_url: str | None = None) -> EditInput:
    """The step ``job`` is on, as :func:`edit` gives it."""
    return edit(job.input, job.steps, job.step, source_url)


def prompt_of(job: JobRecord, step: int) -> str:
    """What step ``step`` of ``job`` asks for."""
    return str(request(job.input, job.steps, step)["prompt"])
