"""How a job's providers share it: spread, failover or cheapest, and the learned limits.

- ``spread`` (the default): the job goes to whichever listed provider has room now, in the
  order the job lists them. A catalog user with several accounts pays for all of them; a
  job that lists one provider behaves exactly as under ``failover``. Among providers that
  have room, a slower one (by its measured time per job) leaves to a faster one the jobs
  the faster would finish first, so it gets fewer jobs without being cut off.
- ``failover``: the job waits for its provider while that one is merely busy, and moves
  on only when its breaker opens or an attempt fails: for those who must use the first
  listed provider whenever it can work.
- ``cheapest``: like ``spread`` (the latency rule included), with the listed providers
  in order of list price (the listed order among equals), so the cheapest with room takes
  the job.

Each provider's in-flight limit is learned (:func:`grown`, :func:`cut`): additive increase
while it accepts work, multiplicative decrease at once when it answers 429 or queue-full,
between a floor and the configured ceiling (``EDITQ_<PROVIDER>_MAX_IN_FLIGHT``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from worker.values.pricing import list_price

Routing = Literal["spread", "failover", "cheapest"]
ROUTINGS: tuple[Routing, ...] = get_args(Routing)
DEFAULT_ROUTING: Routing = "spread"


def ordered(routing: Routing, providers: Sequence[str], model: str) -> tuple[str, ...]:
    """The providers in the order a job of ``routing`` prefers them."""
    if routing != "cheapest":
        return tuple(providers)
    return tuple(sorted(providers, key=lambda name: list_price(name, model, 1)))


@dataclass(frozen=True, slots=True)
class CapacityPolicy:
    """How a provider's in-flight limit is learned."""

    #: Off: every provider's limit is its configured ceiling, as before learning.
    learning: bool = True
    #: Where a provider never heard from starts (its ceiling, when lower).
    start: int = 20
    #: The least a limit ever falls to.
    floor: int = 1
    #: What a rate-limit answer multiplies the limit by.
    decrease: float = 0.9
    #: A second cut waits this long: the answers to one burst count once.
    hold_seconds: float = 1.0


def current(learned: float | None, ceiling: int, policy: CapacityPolicy) -> int:
    """How many jobs a provider may have in flight now."""
    if not policy.learning:
        return ceiling
    value = policy.start if learned is None else learned
    return max(min(math.floor(value), ceiling), min(policy.floor, ceiling))


def grown(
    learned: float | None, cut_at: datetime | None, ceiling: int, policy: CapacityPolicy
) -> float:
    """The limit after the provider accepted one more submission.

    Until its first rate limit a provider's limit grows by one a submission (it doubles
    every round trip, as TCP's slow start does); after that by one a round trip.
    """
    value = float(policy.start if learned is None else learned)
    step = 1.0 if cut_at is None else 1.0 / max(value, 1.0)
    return min(value + step, float(ceiling))


def cut(
    learned: float | None,
    cut_at: datetime | None,
    in_flight: int,
    now: datetime,
    policy: CapacityPolicy,
) -> float | None:
    """The limit after the provider answered 429 or queue-full; None: hold, it was just cut.

    The provider's own limit is about what it had accepted of ours (``in_flight``) when it
    said no, so the new limit is a fraction of that (or of the old limit, when lower).
    """
    if cut_at is not None and now - cut_at < timedelta(seconds=policy.hold_seconds):
        return None
    value = float(policy.start if learned is None else learned)
    return max(float(policy.floor), policy.decrease * min(value, float(max(in_flight, 1))))


def latency_skip(
    provider: str,
    latency: Mapping[str, float],
    full: Mapping[str, int],
) -> int:
    """How many waiting jobs ``provider`` leaves to the faster full providers.

    A faster provider ``f`` with limit ``C_f`` and time per job ``L_f`` finishes about
    ``C_f x (L - L_f) / L_f`` more jobs in the time ``provider`` takes for one (``L``): the
    first that many jobs are done sooner by waiting for it. ``full`` maps each provider
    with no room left to its limit; a provider not yet measured counts as fast as any.
    """
    mine = latency.get(provider)
    if mine is None:
        return 0
    skip = 0.0
    for name, limit in full.items():
        theirs = latency.get(name)
        if name == provider or theirs is None or theirs <= 0 or theirs >= mine:
            continue
        skip += limit * (mine - theirs) / theirs
    return math.floor(skip)
