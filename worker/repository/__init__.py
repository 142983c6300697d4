"""Every SQL statement editq runs, and the named guarded transitions.

:class:`Repository` is the one object use cases talk to. Its parts: ``reads.py`` (queries
that change nothing), ``scheduling.py`` (inserts, leases, polls), ``dispatch.py`` (a
dispatch round), ``transitions.py`` (one method per move of the lifecycle), ``ops.py``
(cancel and retry, one job or every one matching), ``callbacks.py`` (the producer-callback
outbox), ``batches.py`` and ``budgets.py``, ``provider_health.py`` (breakers and rate
buckets), ``retention.py`` (pruning) and ``leadership.py`` (the scheduler lease), over the
machinery of ``base.py`` and the transition statements of ``sql.py``.
"""

from __future__ import annotations

from worker.repository.budgets import BudgetRows
from worker.repository.console import ConsoleRows
from worker.repository.dispatch import DispatchRows
from worker.repository.leadership import LeadershipRows
from worker.repository.provider_health import HealthRows
from worker.repository.retention import RetentionRows
from worker.repository.scheduling import Scheduling

__all__ = ["Repository"]


class Repository(
    Scheduling, DispatchRows, BudgetRows, HealthRows, ConsoleRows, RetentionRows, LeadershipRows
):
    """SQL over one session; the caller owns the transaction."""
