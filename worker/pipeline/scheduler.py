"""The scheduler: a small loop that runs the pipeline's and the batches' ticks.

A loop rather than celery beat: a tick needs no broker round trip. Any number of
schedulers may run; the one holding the lease (:mod:`worker.pipeline.leadership`) ticks,
the others stand by and take over when it dies. Between ticks the leader waits for
dispatch wake-ups (:mod:`worker.pipeline.wakeups`) and dispatches at once, so a provider
slot that frees up is refilled, and a new job sent, in milliseconds rather than at the
next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from worker.pipeline.leadership import Leadership
from worker.pipeline.steps import Pipeline
from worker.pipeline.wakeups import Wakeups
from worker.usecases.batches import Batches
from worker.usecases.retention import Retention

log = logging.getLogger("editq.scheduler")


#: How long a wake-up waits for more completions to share its dispatch round. Completions
#: that arrive while a round runs share the next one anyway, so the pause can be short.
GATHER_SECONDS = 0.005
#: Longest single wait for a wake-up: a stop (SIGTERM) is seen within it, however long
#: the tick, so the scheduler gives its lease up rather than being killed holding it.
STOP_CHECK_SECONDS = 0.5


def run(
    pipeline: Pipeline,
    batches: Batches,
    interval: float,
    stop: threading.Event,
    wakeups: Wakeups | None = None,
    on_tick: Callable[[], None] | None = None,
    prune: Pruning | None = None,
    leadership: Leadership | None = None,
) -> None:
    """Tick until ``stop`` is set; a failing tick is logged and the next one tries again.

    With ``leadership`` only the holder of the lease ticks (None: this loop always does,
    for a process that is the only scheduler by construction). ``on_tick`` is called after
    every round that went through, leading or standing by (a liveness heartbeat);
    ``prune`` deletes what is past its retention, every so often.
    """
    try:
        while not stop.is_set():
            try:
                if leadership is None or leadership.renew():
                    _tick(pipeline, batches, prune)
                if on_tick is not None:
                    on_tick()
            except Exception:
                log.exception("tick failed; trying again in %.1f s", interval)
            if leadership is not None and not leadership.leading:
                if wakeups is not None:
                    wakeups.close()  # a standby keeps no LISTEN connection
                stop.wait(interval)
            else:
                _between_ticks(pipeline, interval, stop, wakeups, leadership)
    finally:
        if leadership is not None:
            leadership.release()


def _tick(pipeline: Pipeline, batches: Batches, prune: Pruning | None) -> None:
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


class Pruning:
    """Runs a retention prune at most every ``every`` seconds (the first at once), for at
    most ``budget`` seconds (the rest waits for the next), so the leader renews its lease
    in time."""

    def __init__(self, retention: Retention, every: float, budget: float | None = None) -> None:
        self._retention = retention
        self._every = every
        self._budget = budget
        self._next = 0.0

    def when_due(self) -> None:
        """Prune if it is time; a failed prune is logged and the tick goes on."""
        if self._retention.days is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self._every
        try:
            self._retention.prune(seconds=self._budget)
        except Exception:
            log.exception("prune failed; trying again in %.0f s", self._every)


def _between_ticks(
    pipeline: Pipeline,
    interval: float,
    stop: threading.Event,
    wakeups: Wakeups | None,
    leadership: Leadership | None,
) -> None:
    """Wait out the interval, dispatching whenever capacity is freed meanwhile (while this
    scheduler still holds its lease)."""
    if wakeups is None:
        stop.wait(interval)
        return
    deadline = time.monotonic() + interval
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if not wakeups.wait(min(left, STOP_CHECK_SECONDS)):
            continue
        stop.wait(GATHER_SECONDS)
        wakeups.drain()
        if leadership is not None and not leadership.leading:
            return
        try:
            pipeline.dispatch()
        except Exception:
            log.exception("dispatch on wake-up failed; the next tick tries again")
