"""The scheduler: a small loop that runs the pipeline's and the batches' ticks.

A loop rather than celery beat: a tick needs no broker round trip, and running two
schedulers is safe because dispatch serialises itself with an advisory lock. Between
ticks it waits for dispatch notifications (:mod:`worker.pipeline.wakeups`) and dispatches at once,
so a provider slot that frees up is refilled, and a new job sent, in milliseconds rather
than at the next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from worker.pipeline.steps import Pipeline
from worker.pipeline.wakeups import Wakeups
from worker.usecases.batches import Batches
from worker.usecases.retention import Retention

log = logging.getLogger("editq.scheduler")


#: How long a wake-up waits for more completions to share its dispatch round. Completions
#: that arrive while a round runs share the next one anyway, so the pause can be short.
GATHER_SECONDS = 0.005


def run(
    pipeline: Pipeline,
    batches: Batches,
    interval: float,
    stop: threading.Event,
    wakeups: Wakeups | None = None,
    on_tick: Callable[[], None] | None = None,
    prune: Pruning | None = None,
) -> None:
    """Tick until ``stop`` is set; a failing tick is logged and the next one tries again.

    ``on_tick`` is called after every tick that went through (a liveness heartbeat);
    ``prune`` deletes what is past its retention, every so often.
    """
    while not stop.is_set():
        try:
            if prune is not None:
                prune.when_due()
            finishing = batches.tick()
            if finishing:
                log.info("tick: %d batch(es) finished; writing their result files", finishing)
            report = pipeline.tick()
            if report.dispatched or report.polls or report.repaired or report.callbacks:
                log.info(
                    "tick: dispatched %d, polls %d, repaired %d, callbacks %d",
                    report.dispatched,
                    report.polls,
                    report.repaired,
                    report.callbacks,
                )
            if on_tick is not None:
                on_tick()
        except Exception:
            log.exception("tick failed; trying again in %.1f s", interval)
        _between_ticks(pipeline, interval, stop, wakeups)


class Pruning:
    """Runs a retention prune at most every ``every`` seconds (the first at once)."""

    def __init__(self, retention: Retention, every: float) -> None:
        self._retention = retention
        self._every = every
        self._next = 0.0

    def when_due(self) -> None:
        """Prune if it is time; a failed prune is logged and the tick goes on."""
        if self._retention.days is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self._every
        try:
            self._retention.prune()
        except Exception:
            log.exception("prune failed; trying again in %.0f s", self._every)


def _between_ticks(
    pipeline: Pipeline, interval: float, stop: threading.Event, wakeups: Wakeups | None
) -> None:
    """Wait out the interval, dispatching whenever capacity is freed meanwhile."""
    if wakeups is None:
        stop.wait(interval)
        return
    deadline = time.monotonic() + interval
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if not wakeups.wait(left):
            continue
        stop.wait(GATHER_SECONDS)
        wakeups.drain()
        try:
            pipeline.dispatch()
        except Exception:
            log.exception("dispatch on wake-up failed; the next tick tries again")
