"""The worker process's container: one per process, however many threads start at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.wiring import Container, forget_process_container, process_container

THREADS = 16


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Building connects to nothing, so these URLs need not answer.
    monkeypatch.setenv("EDITQ_BROKER_URL", "memory://")
    monkeypatch.setenv("EDITQ_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    forget_process_container()
    yield
    forget_process_container()


@pytest.mark.usefixtures("fresh_process")
def test_threads_whose_first_tasks_start_together_share_one_container() -> None:
    # A thread pool hands its first tasks to all its threads at once. Each container holds
    # a database pool, an HTTP pool and an S3 client (megabytes of service model): one per
    # thread would multiply connections and memory by the thread count.
    together = threading.Barrier(THREADS)

    def first_task(_: int) -> Container:
        together.wait()
        return process_container()

    with ThreadPoolExecutor(THREADS) as pool:
        built = list(pool.map(first_task, range(THREADS)))
    assert len({id(container) for container in built}) == 1
    built[0].close()
