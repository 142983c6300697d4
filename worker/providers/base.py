"""The interface every provider adapter implements, and the values that cross it.

Adapters turn provider JSON into these frozen values once, at the edge; the core never
sees a raw provider body. Each adapter classifies its provider's errors once, into a
:class:`worker.faults.Fault`, and raises it in a :class:`ProviderCallError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from worker.faults import Fault
from worker.values.canonical import EditInput


class ProviderCallError(Exception):
    """A call to the provider failed; ``fault`` says how and what to do about it."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(f"{fault.code}: {fault.message}")
        self.fault = fault


@dataclass(frozen=True, slots=True)
class Submission:
    """The provider accepted an attempt: its request id and the handles to follow."""

    request_id: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """What an adapter needs to ask about an attempt it submitted earlier."""

    attempt_id: uuid.UUID
    request_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RemoteOutput:
    """One output as the provider reports it: where to fetch it, and what it says it is.

    ``stored`` is True when the provider already PUT the output to the upload URL it was
    given (Runware's ``uploadEndpoint``): finalize then checks our bucket instead of
    downloading ``url``. ``flagged`` is the provider's own moderation flag for this image
    (fal's ``has_nsfw_concepts``, Runware's ``NSFWContent``); None when it says nothing.
    """

    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    stored: bool = False
    flagged: bool | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """The provider is still working (queued or running)."""

    position: int | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """The provider finished and produced outputs."""

    outputs: tuple[RemoteOutput, ...]
    cost_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider finished the attempt without outputs."""

    fault: Fault


Outcome = Pending | Completed | Failed


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified provider callback about one attempt.

    ``Pending`` means the callback alone does not say the attempt is done (Runware sends one
    callback per image). The core then hands ``settle``, when there is one, what it recorded
    of the attempt: the callback may be the whole result after all (an attempt of one image).
    If it still says ``Pending``, the core asks the provider for the whole result at once.
    """

    attempt_id: uuid.UUID | None
    request_id: str
    outcome: Outcome
    settle: Callable[[AttemptRef], Outcome] | None = None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A canonical field a provider cannot honour, and why."""

    field: str
    reason: str


class Provider(Protocol):
    """One hosted provider of FLUX.1 Kontext."""

    #: Short name used in configuration, routing and job records (``fal``).
    name: str
    #: Whether the provider can PUT an output straight to a presigned URL we give it.
    uploads_directly: bool
    #: Whether sending the same attempt id twice starts (and bills) one request only.
    idempotent_submit: bool

    def unsupported(self, model: str, edit: EditInput) -> list[Unsupported]:
        """What in this request the provider cannot honour; empty when it can run it."""
        ...

    def submit(
        self,
        model: str,
        edit: EditInput,
        attempt_id: uuid.UUID,
        webhook_url: str | None,
        upload_url: str | None = None,
    ) -> Submission:
        """Send one attempt; returns at once. Raises :class:`ProviderCallError`.

        ``attempt_id`` is our own id for this call; adapters send it where the protocol has
        room for it. ``upload_url`` is given only to a provider that ``uploads_directly``,
        for a single output: a presigned PUT URL in our bucket.
        """
        ...

    def status(self, ref: AttemptRef) -> Outcome:
        """Ask where an attempt is; fetch its result when done. Raises ProviderCallError."""
        ...

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> WebhookEvent:
        """Verify and parse a callback. Raises :class:`worker.errors.WebhookRejected`."""
        ...

    def webhook_url(self, public_url: str, attempt_id: uuid.UUID) -> str | None:
        """The callback URL to hand the provider for one attempt; None: poll this one."""
        ...

    def cancel(self, ref: AttemptRef) -> None:
        """Ask the provider to stop an attempt, best effort."""
        ...
