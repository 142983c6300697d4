"""Latency, concurrency and injected faults, shared by the provider emulators.

A :class:`FaultConfig` says how an emulator should misbehave; a :class:`FaultInjector` draws
from it with a seedable :class:`random.Random`, so a seeded run injects the same faults in the
same order; a :class:`ConcurrencyGate` makes requests beyond the concurrency limit wait their
turn with real queue positions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter

#: fal retries a webhook 10 times over about two hours; these delays (seconds) add up to that.
FAL_WEBHOOK_RETRY_DELAYS: tuple[float, ...] = (
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2100.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """How an emulator delivers webhooks, including the ways it misbehaves on purpose.

    ``retry_delays`` are the waits (seconds) before each retry after a failed attempt (a non-2xx
    answer or a connection error); their count is the number of retries. ``duplicates`` extra
    copies follow every successful delivery. ``drop_rate`` is the share of webhooks never sent.
    ``timeout`` bounds each attempt.
    """

    retry_delays: tuple[float, ...] = FAL_WEBHOOK_RETRY_DELAYS
    duplicates: int = 0
    drop_rate: float = 0.0
    timeout: float = 15.0

    def __post_init__(self) -> None:
        if any(delay < 0 for delay in self.retry_delays):
            raise ValueError("webhook retry delays must not be negative")
        if self.duplicates < 0:
            raise ValueError("webhook duplicates must not be negative")
        _check_rate("webhook drop_rate", self.drop_rate)
        if self.timeout <= 0:
            raise ValueError("webhook timeout must be positive")


@dataclass(frozen=True)
class FaultConfig:
    """How an emulator behaves: how slow it is, how many requests it runs, how often it fails.

    ``latency`` is the mean time (seconds) a request spends running, ``jitter`` the most it
    varies either way. ``concurrency`` is how many requests run at once (``None``: no limit);
    the rest wait in the queue. Each ``rate_*`` is a probability from 0 to 1: ``rate_5xx``,
    ``rate_429`` (answered with ``Retry-After: retry_after``) and ``rate_422`` reject a submit,
    tried in that order; ``rate_moderated`` fails a finished request as a content-policy
    violation. The output faults spoil a finished request's images in the provider's own
    fields, tried in this order: ``rate_blackout`` returns black images flagged as unsafe (as
    a safety checker does), ``rate_flagged`` flags images that are not black,
    ``rate_unchanged`` hands the source back, ``rate_wrong_size`` returns square images
    whatever was asked. ``seed`` makes the draws repeatable (``None``: different every run).
    ``account_limit`` is the provider's own, unpublished limit on requests one account may
    have queued or running: a submit beyond it is answered 429 with the provider's own
    rate-limit body (``None``: no limit), the limit a client must learn from the answers.
    ``moderated_words`` moderates, whatever the draw, every request whose prompt holds one of
    them (case aside), as a provider's prompt filter does: a test can moderate one step of a
    chain and not the others.

    ``rewrite_hosts`` is not a fault but where the emulator's own calls go: it maps a
    ``host:port`` a URL names to the ``host:port`` the emulator should connect to instead
    (``{"localhost:9000": "minio:9000"}`` when the emulator runs in a container and the URLs
    it is handed were made for the host). The request keeps its ``Host`` header, so a
    presigned URL's signature still holds.
    """

    latency: float = 2.0
    jitter: float = 0.5
    concurrency: int | None = 10
    rate_5xx: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_422: float = 0.0
    rate_moderated: float = 0.0
    rate_blackout: float = 0.0
    rate_flagged: float = 0.0
    rate_unchanged: float = 0.0
    rate_wrong_size: float = 0.0
    moderated_words: tuple[str, ...] = ()
    account_limit: int | None = None
    seed: int | None = None
    webhook: WebhookPolicy = field(default_factory=WebhookPolicy)
    rewrite_hosts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0 or self.retry_after < 0:
            raise ValueError("latency, jitter and retry_after must not be negative")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1, or None for no limit")
        if self.account_limit is not None and self.account_limit < 1:
            raise ValueError("account_limit must be at least 1, or None for no limit")
        for name in ("rate_5xx", "rate_429", "rate_422", "rate_moderated", *OUTPUT_FAULT_RATES):
            _check_rate(name, getattr(self, name))

    @property
    def faults(self) -> FaultConfig:
        """Just the shared fault settings, without any fields a subclass adds."""
        names = [spec.name for spec in dataclasses.fields(FaultConfig)]
        return FaultConfig(**{name: getattr(self, name) for name in names})


#: The keys :func:`patched` accepts: the fault settings that make sense to change while running.
PATCHABLE_KEYS = frozenset(
    {
        "latency",
        "jitter",
        "concurrency",
        "rate_5xx",
        "rate_429",
        "retry_after",
        "rate_422",
        "rate_moderated",
        "rate_blackout",
        "rate_flagged",
        "rate_unchanged",
        "rate_wrong_size",
        "moderated_words",
        "account_limit",
        "webhook_retry_delays",
        "webhook_duplicates",
        "webhook_drop_rate",
        "webhook_timeout",
    }
)


@functools.cache
def _fault_config_adapter() -> TypeAdapter[FaultConfig]:
    # pydantic validates field types (and runs __post_init__), so a PATCH body with a string for
    # a rate fails with a readable message instead of a TypeError deep in a comparison.
    return TypeAdapter(FaultConfig)


def patched(config: FaultConfig, changes: Mapping[str, Any]) -> FaultConfig:
    """Return the shared part of ``config`` with ``changes`` applied.

    ``changes`` uses flat names from :data:`PATCHABLE_KEYS`; ``webhook_<name>`` sets the
    webhook policy's ``<name>``. Raises :class:`ValueError` for an unknown key or a bad value.
    """
    unknown = sorted(set(changes) - PATCHABLE_KEYS)
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(PATCHABLE_KEYS)}")
    merged = dataclasses.asdict(config.faults)
    for key, value in changes.items():
        if key.startswith("webhook_"):
            merged["webhook"][key.removeprefix("webhook_")] = value
        else:
            merged[key] = value
    return _fault_config_adapter().validate_python(merged)


class SubmitFault(StrEnum):
    """A failure injected at submit, before the emulator looks at the input."""

    #: The provider could not schedule the request (fal: 503 ``runner_scheduling_failure``).
    SERVER_ERROR = "server_error"
    #: Too many requests; the answer carries ``Retry-After``.
    RATE_LIMITED = "rate_limited"
    #: The input is rejected as invalid (422).
    INVALID = "invalid"


class OutputFault(StrEnum):
    """A way a finished request's images come back wrong (the quality gate's cases)."""

    #: Black images, flagged by the provider's safety checker.
    BLACKOUT = "blackout"
    #: Images flagged as unsafe that are not black.
    FLAGGED = "flagged"
    #: The source handed back untouched.
    UNCHANGED = "unchanged"
    #: Square images, whatever shape was asked.
    WRONG_SIZE = "wrong_size"

    @property
    def flagged(self) -> bool:
        """Whether the provider's own moderation flag is set on the images."""
        return self in (OutputFault.BLACKOUT, OutputFault.FLAGGED)


#: Each output fault's rate field, in the order they are tried.
OUTPUT_FAULT_RATES: dict[str, OutputFault] = {f"rate_{fault.value}": fault for fault in OutputFault}


class FaultInjector:
    """Draws latency and faults from the current :class:`FaultConfig`.

    Only call it from one thread (the emulator's event loop): :class:`random.Random` is shared.
    """

    def __init__(self, config: FaultConfig) -> None:
        self.config = config.faults
        self._random = random.Random(config.seed)

    def submit_fault(self, busy: int = 0) -> SubmitFault | None:
        """Which fault to inject into this submit, if any; ``busy`` is how many requests the
        account has queued or running (``account_limit`` answers 429 beyond it)."""
        if self._chance(self.config.rate_5xx):
            return SubmitFault.SERVER_ERROR
        limit = self.config.account_limit
        if self._chance(self.config.rate_429) or (limit is not None and busy >= limit):
            return SubmitFault.RATE_LIMITED
        if self._chance(self.config.rate_422):
            return SubmitFault.INVALID
        return None

    def moderated(self, prompt: str = "") -> bool:
        """Whether this request's output is flagged as a content-policy violation.

        The draw is made whatever the prompt, so a seeded emulator's later draws do not
        depend on which prompts held a moderated word.
        """
        drawn = self._chance(self.config.rate_moderated)
        lowered = prompt.lower()
        return drawn or any(word.lower() in lowered for word in self.config.moderated_words)

    def output_fault(self) -> OutputFault | None:
        """How this request's images come back wrong, if they do."""
        for rate, fault in OUTPUT_FAULT_RATES.items():
            if self._chance(getattr(self.config, rate)):
                return fault
        return None

    def latency(self) -> float:
        """How long (seconds) this request should run: the mean, plus or minus the jitter."""
        spread = self._random.uniform(-self.config.jitter, self.config.jitter)
        return max(0.0, self.config.latency + spread)

    def drop_webhook(self) -> bool:
        """Whether this request's webhook is lost and never sent."""
        return self._chance(self.config.webhook.drop_rate)

    def seed(self) -> int:
        """A seed for a request that did not give one, as a provider picks one itself."""
        return self._random.randrange(2**32)

    def _chance(self, rate: float) -> bool:
        # No draw for a zero rate, so turning on one fault does not shift every other draw.
        return rate > 0 and self._random.random() < rate


class ConcurrencyGate:
    """First come, first served admission to a limited number of running slots.

    A request joins; if a slot is free it is admitted at once, otherwise it waits and can report
    its 0-based queue position. Leaving (finished, failed or cancelled) frees its slot or its
    place. Use it from the event loop only; it is not thread-safe.
    """

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._waiting: dict[str, asyncio.Future[None]] = {}  # insertion order is queue order
        self._running: dict[str, asyncio.Future[None]] = {}

    @property
    def waiting(self) -> int:
        """How many requests wait for a slot."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """How many requests hold a slot."""
        return len(self._running)

    def is_full(self) -> bool:
        """Whether a request joining now would have to wait."""
        return bool(self._waiting) or not self._has_free_slot()

    def join(self, key: str) -> None:
        """Queue ``key`` and admit it at once if a slot is free. Call from the event loop."""
        self._waiting[key] = asyncio.get_running_loop().create_future()
        self._admit()

    async def wait(self, key: str) -> None:
        """Return once ``key`` holds a slot."""
        ticket = self._waiting.get(key) or self._running[key]
        await ticket

    def position(self, key: str) -> int | None:
        """``key``'s 0-based place in the queue, or ``None`` if it is not waiting."""
        for index, waiting_key in enumerate(self._waiting):
            if waiting_key == key:
                return index
        return None

    def leave(self, key: str) -> None:
        """Give up ``key``'s place or slot, and admit whoever is next."""
        ticket = self._waiting.pop(key, None)
        if ticket is not None:
            ticket.cancel()
        self._running.pop(key, None)
        self._admit()

    def set_limit(self, limit: int | None) -> None:
        """Change how many requests may run; a higher limit admits waiting ones at once."""
        self._limit = limit
        self._admit()

    def _has_free_slot(self) -> bool:
        return self._limit is None or len(self._running) < self._limit

    def _admit(self) -> None:
        while self._waiting and self._has_free_slot():
            key = next(iter(self._waiting))
            ticket = self._waiting.pop(key)
            self._running[key] = ticket
            if not ticket.done():
                ticket.set_result(None)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
