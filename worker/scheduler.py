"""The scheduler: a small loop that runs the pipeline's and the batches' ticks.

A loop rather than celery beat: a tick needs no broker round trip, and running two
schedulers is safe because dispatch serialises itself with an advisory lock.
"""

from __future__ import annotations

import logging
import threading

from worker.batches import Batches
from worker.pipeline import Pipeline

log = logging.getLogger("editq.scheduler")


def run(pipeline: Pipeline, batches: Batches, interval: float, stop: threading.Event) -> None:
    """Tick until ``stop`` is set; a failing tick is logged and the next one tries again."""
    while not stop.is_set():
        try:
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
        except Exception:
            log.exception("tick failed; trying again in %.1f s", interval)
        stop.wait(interval)
