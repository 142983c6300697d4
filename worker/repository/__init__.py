"""Every SQL statement editq runs, and the named guarded transitions.

:class:`Repository` is the one object use cases talk to. Its parts live in ``reads.py``,
``scheduling.py``, ``transitions.py``, ``batches.py`` and ``health.py``, over the machinery
of ``base.py``.
"""

from __future__ import annotations

from worker.repository.batches import BatchRows
from worker.repository.health import HealthRows
from worker.repository.reads import Reads
from worker.repository.scheduling import Scheduling

__all__ = ["Repository"]


class Repository(Reads, Scheduling, BatchRows, HealthRows):
    """SQL over one session; the caller owns the transaction."""
