"""The quality gate in finalize: check every output before its job may succeed.

The checks themselves are pure (:mod:`worker.values.quality`); this is where they meet the
job: what was asked (the request's format and shape, or the exact size sent to Runware),
what the source looks like (read once, the first time a job's outputs are checked, and
kept on the job row), and what the job's policy says a failed check does
(:mod:`worker.values.quality_policy`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.database import Database
from worker.fetch import Fetcher, FetchError
from worker.pipeline.outputs import Fetched
from worker.values import quality
from worker.values.canonical import EditInput
from worker.values.quality_policy import Action, QualityPolicy, action
from worker.values.records import AttemptRecord, JobRecord

log = logging.getLogger("editq.pipeline")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's reports on an attempt's outputs, and what they mean for the job."""

    reports: tuple[quality.Report, ...]
    #: ``accept``, ``retry`` or ``fail``.
    action: Action
    #: The check that decided it (None when every check passed).
    failed: str | None = None

    @property
    def code(self) -> str | None:
        """The error code of the failed check."""
        return quality.CHECK_CODES[self.failed] if self.failed else None

    def message(self) -> str:
        """What failed, in words, for the job's error."""
        if self.failed is None:
            return ""
        failing = [i for i, r in enumerate(self.reports) if r.failed == self.failed]
        return (
            f"output {failing[0]} failed the {self.failed} check: {_why(self.reports[failing[0]])}"
        )


class QualityGate:
    """Judges an attempt's outputs; off, it accepts everything unchecked."""

    def __init__(
        self,
        db: Database,
        fetcher: Fetcher,
        thresholds: quality.Thresholds,
        default: QualityPolicy,
        enabled: bool = True,
    ) -> None:
        self._db = db
        self._fetcher = fetcher
        self._thresholds = thresholds
        self._default = default
        self.enabled = enabled

    def judge(
        self, job: JobRecord, attempt: AttemptRecord, outputs: Sequence[Fetched]
    ) -> Verdict | None:
        """The verdict on ``outputs``; None when the gate is off."""
        if not self.enabled:
            return None
        edit = EditInput.model_validate(job.input)
        expected = quality.Expected(edit.output_format, edit.aspect_ratio, _exact_size(attempt))
        source = self._source(job, edit)
        reports = tuple(
            quality.check(o.data, expected, source, o.flagged, self._thresholds) for o in outputs
        )
        failed = next((name for name in quality.CHECKS for r in reports if r.failed == name), None)
        if failed is None:
            return Verdict(reports, "accept")
        policy = QualityPolicy.from_json(job.quality, self._default)
        return Verdict(reports, action(policy, failed, job.quality_retries), failed)

    def _source(self, job: JobRecord, edit: EditInput) -> quality.SourceFacts | None:
        """What the checks compare with: kept on the job, or read now and kept."""
        with self._db.transaction() as repo:
            kept = repo.source_facts(job.id)
        if kept is not None:
            return quality.SourceFacts.from_json(kept)
        try:
            facts = quality.source_facts(self._fetcher.fetch(edit.image_url))
        except (FetchError, quality.UnreadableSource) as exc:
            # Without the source the outputs are still checked; only the comparisons
            # with it are skipped (and say so in the report).
            log.warning("quality gate of %s could not read the source: %s", job.id, exc)
            return None
        with self._db.transaction() as repo:
            repo.keep_source_facts(job.id, facts.to_json())
        return facts


def _exact_size(attempt: AttemptRecord) -> tuple[int, int] | None:
    size = attempt.provider_data.get("size")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return size[0], size[1]
    return None


#: Each check's failure in words; the report's scores fill the blanks.
_WHY = {
    "moderated": "the provider flagged it as unsafe content",
    "decodes": "it does not decode ({decode_error})",
    "format": "it is {format}, not the format asked for",
    "blank": "it is near-uniform (pixel stddev {stddev})",
    "unchanged": (
        "it is the source handed back (distance {distance}, colour difference {color_difference})"
    ),
    "size": "it is {width}x{height}, not the {expected} asked for",
}


def _why(report: quality.Report) -> str:
    scores: dict[str, Any] = collections.defaultdict(lambda: "?", report.scores)
    return _WHY.get(report.failed or "", "a check failed").format_map(scores)
