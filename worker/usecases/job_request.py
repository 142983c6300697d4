"""What a producer asks for when it queues one job, and which source URLs may be fetched.

:class:`JobRequest` is the validated request the entry points (API, CLI) hand to
:class:`worker.usecases.jobs.Jobs`; its fingerprint is what an ``Idempotency-Key`` is held to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from worker.fetch import Fetcher, FetchError
from worker.values.canonical import EditInput
from worker.values.chain import StepIn
from worker.values.quality_policy import QualityPolicy
from worker.values.routing import Routing


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A validated request for one edit job."""

    model: str
    input: EditInput
    providers: tuple[str, ...] = ()
    external_id: str | None = None
    callback_url: str | None = None
    priority: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    #: What a failed quality check does to this job; None: the settings' default.
    quality: QualityPolicy | None = None
    #: The steps after the first (:mod:`worker.values.chain`); empty for a one-step job.
    steps: tuple[StepIn, ...] = ()
    #: Callback events besides the terminal ones (``job.step_succeeded``).
    callback_events: tuple[str, ...] = ()
    #: How the providers share the job; None: the settings' default.
    routing: Routing | None = None

    def fingerprint(self) -> str:
        """sha256 of the request in canonical JSON; equal requests give equal fingerprints."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": self.input.model_dump(mode="json", exclude_none=True),
            "providers": list(self.providers),
            "external_id": self.external_id,
            "callback_url": self.callback_url,
            "priority": self.priority,
            "metadata": self.metadata,
        }
        if self.quality is not None:
            body["quality"] = self.quality.to_json()
        if self.steps:
            body["steps"] = [s.model_dump(mode="json", exclude_unset=True) for s in self.steps]
        if self.callback_events:
            body["callback_events"] = sorted(self.callback_events)
        if self.routing is not None:
            body["routing"] = self.routing
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SourceUrls:
    """Whether a source ``image_url`` may be fetched from here: public addresses only."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher

    def refusal(self, url: str) -> str | None:
        """Why ``url`` is refused for good, or None (a data URI, a public or unresolved host).

        A host that does not resolve now may resolve later, so only a definite refusal (a
        loopback, private or reserved address) counts.
        """
        if url.startswith("data:"):
            return None
        try:
            self._fetcher.check_url(url)
        except FetchError as exc:
            return str(exc) if exc.permanent else None
        return None
