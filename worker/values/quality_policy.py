"""What a failed quality check does to a job: fail it, try again elsewhere, or accept it.

A job's ``quality.on_failure`` (or its batch's, or ``EDITQ_QUALITY_ON_FAILURE``) is one of:

- ``by_check`` (the default): each check's own default, chosen for someone who pays per
  image. A moderated or blank output fails at once: the same request would be moderated
  again, so another attempt is money thrown after it. An output that came back unchanged,
  the wrong size, the wrong format or undecodable is tried once more, on the next provider
  of the job's list: that is a provider's slip, and another provider seldom repeats it;
- ``fail``: any failed check fails the job, with the check's code;
- ``retry``: any failed check sends the job round again, on the next provider;
- ``accept``: the job succeeds, and the failed check is kept as a flag on its output.

Retries for quality are bounded by ``max_retries`` (default 1) and, like every attempt,
count against ``max_attempts`` and the batch budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

OnFailure = Literal["by_check", "fail", "retry", "accept"]
Action = Literal["accept", "retry", "fail"]

ON_FAILURE: tuple[str, ...] = get_args(OnFailure)

#: Each check's own answer under ``by_check``.
BY_CHECK: Mapping[str, Action] = {
    "moderated": "fail",
    "blank": "fail",
    "decodes": "retry",
    "format": "retry",
    "unchanged": "retry",
    "size": "retry",
}

#: Quality retries a job gets unless it says otherwise.
DEFAULT_MAX_RETRIES = 1


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    """One job's answer to a failed check."""

    on_failure: OnFailure = "by_check"
    max_retries: int = DEFAULT_MAX_RETRIES

    def to_json(self) -> dict[str, Any]:
        """The policy as the job row keeps it."""
        return {"on_failure": self.on_failure, "max_retries": self.max_retries}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, default: QualityPolicy) -> QualityPolicy:
        """The policy a job row keeps; ``default`` for what it leaves out."""
        if not data:
            return default
        on_failure = data.get("on_failure", default.on_failure)
        if on_failure not in ON_FAILURE:
            on_failure = default.on_failure
        return cls(on_failure, int(data.get("max_retries", default.max_retries)))


def action(policy: QualityPolicy, failed: str, retries_used: int) -> Action:
    """What to do about an output whose ``failed`` check failed, after ``retries_used``."""
    wanted = BY_CHECK.get(failed, "fail") if policy.on_failure == "by_check" else policy.on_failure
    if wanted == "retry" and retries_used >= policy.max_retries:
        return "fail"
    return wanted
