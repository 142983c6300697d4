"""The asyncio tasks an emulator runs in the background: started, cancelled, waited for.

Each runner hands its work here rather than keeping its own bookkeeping: a task that
crashes is logged (an emulator bug must not pass silently), one that ends leaves the set,
and :meth:`Background.close` cancels what is left when the emulator stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class Background:
    """A set of named asyncio tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task called ``name`` (unique among the running ones)."""
        task = asyncio.create_task(work, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._finished)

    def cancel(self, name: str) -> None:
        """Cancel the task called ``name``, if it is still running."""
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Cancel every task still running, and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._tasks.get(task.get_name()) is task:
            del self._tasks[task.get_name()]
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s crashed", task.get_name(), exc_info=task.exception())
