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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.fetch import Fetcher, FetchError
from worker.pipeline.outputs import Fetched
from worker.storage.base import Storage, StorageError
from worker.values import chain, quality
from worker.values.canonical import EditInput
from worker.values.quality_policy import Action, QualityPolicy, action
from worker.values.records import AttemptRecord, JobRecord, OutputRecord

log = logging.getLogger("editq.pipeline")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's reports on an attempt's outputs, and what they mean for the job."""

    reports: tuple[quality.Report, ...]
    #: ``accept``, ``retry`` or ``fail``.
    action: Action
    #: The check that decided it (None when every check passed).
    failed: str | None = None
    #: What was read of the source just now, for the job row to keep (None: it has it).
    new_source: dict[str, Any] | None = None

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
        fetcher: Fetcher,
        storage: Storage,
        thresholds: quality.Thresholds,
        default: QualityPolicy,
        enabled: bool = True,
    ) -> None:
        self._fetcher = fetcher
        self._storage = storage
        self._thresholds = thresholds
        self._default = default
        self.enabled = enabled

    def judge(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        outputs: Sequence[Fetched],
        kept: Mapping[str, Any] | None,
        step_source: OutputRecord | None = None,
    ) -> Verdict | None:
        """The verdict on ``outputs``; None when the gate is off.

        ``kept`` is what the job row keeps of the source; without it the source is read
        now, and the verdict carries what was read, to be kept in the transaction that
        acts on it (no extra round trip per job). The source of a chain's later step is
        ``step_source``, the stored output of the step before, read from the bucket.
        """
        if not self.enabled:
            return None
        edit = chain.job_edit(job)
        expected = quality.Expected(edit.output_format, edit.aspect_ratio, _exact_size(attempt))
        source = (
            quality.SourceFacts.from_json(kept)
            if kept
            else self._read_source(job, edit, step_source)
        )
        new_source = None if kept or source is None else source.to_json()
        reports = tuple(
            quality.check(o.data, expected, source, o.flagged, self._thresholds) for o in outputs
        )
        failed = next((name for name in quality.CHECKS for r in reports if r.failed == name), None)
        if failed is None:
            return Verdict(reports, "accept", new_source=new_source)
        policy = QualityPolicy.from_json(job.quality, self._default)
        chosen = action(policy, failed, job.quality_retries)
        return Verdict(reports, chosen, failed, new_source)

    def _read_source(
        self, job: JobRecord, edit: EditInput, step_source: OutputRecord | None
    ) -> quality.SourceFacts | None:
        """What the checks compare with, read from the source image itself."""
        try:
            if step_source is not None:
                return quality.source_facts(self._storage.get(step_source.key))
            return quality.source_facts(self._fetcher.fetch(edit.image_url))
        except (FetchError, StorageError, quality.UnreadableSource) as exc:
            # Without the source the outputs are still checked; only the comparisons
            # with it are skipped (and say so in the report).
            log.warning("quality gate of %s could not read the source: %s", job.id, exc)
            return None


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
