"""What a perfect dispatcher would reach: the figure editq's makespans are read against."""

from __future__ import annotations

import heapq
import random
import statistics


def best_possible(
    jobs: int, capacity: int, latency: float, jitter: float, runs: int = 200
) -> float:
    """The mean makespan of a perfect dispatcher: no cost, a slot refilled as it frees.

    Latencies are drawn as the emulator draws them (uniform, ``latency`` +- ``jitter``).
    The ideal assumes every job takes the mean, so the last slots to finish make even a
    perfect run longer; what lies between this and the measured makespan is editq's.
    """
    spans = []
    for seed in range(runs):
        draw = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        frees = [0.0] * capacity  # when each slot frees, as a min-heap
        for _ in range(jobs):
            start = heapq.heappop(frees)
            took = max(0.0, draw.uniform(latency - jitter, latency + jitter))
            heapq.heappush(frees, start + took)
        spans.append(max(frees))
    return statistics.fmean(spans)
