"""Integration fixtures: the real app code over real PostgreSQL, Valkey, S3 and a fal emulator.

The Celery worker and the scheduler run in threads of the test process, with the same
code ``editq worker`` and ``editq scheduler`` run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import text

from emulators.fal import FalEmulatorConfig, create_app
from emulators.faults import WebhookPolicy
from emulators.runflow import RunflowEmulatorConfig
from emulators.runflow import create_app as create_runflow_app
from emulators.runware import RunwareEmulatorConfig
from emulators.runware import create_app as create_runware_app
from emulators.server import RunningServer, run_in_thread
from worker.celery_app import app as celery_app
from worker.pipeline import scheduler
from worker.wiring import Container, forget_process_container, process_container

pytestmark = pytest.mark.integration

API_KEY = "integration-test-key"


@pytest.fixture(scope="session")
def fal_emulator() -> Iterator[RunningServer]:
    """A fal emulator with short latency and a fast webhook retry schedule."""
    config = FalEmulatorConfig(
        latency=0.15,
        jitter=0.05,
        concurrency=50,
        webhook=WebhookPolicy(retry_delays=(0.2, 0.5, 1.0), timeout=5),
        seed=7,
    )
    with run_in_thread(create_app(config)) as server:
        yield server


#: What the Runware emulator reports per image, unlike the list price, so a test can tell
#: a reported cost from a looked-up one.
RUNWARE_REPORTED_COST = 0.05
RUNFLOW_SECRET = "whsec_integration-secret"
#: What producer callbacks are signed with (a Standard Webhooks secret: whsec_ and base64).
CALLBACK_SECRET = "whsec_aW50ZWdyYXRpb24tY2FsbGJhY2stc2VjcmV0LTMyYg=="


@pytest.fixture(scope="session")
def runware_emulator() -> Iterator[RunningServer]:
    """A Runware emulator that reports its own cost per image."""
    config = RunwareEmulatorConfig(
        latency=0.15, jitter=0.05, concurrency=50, cost_per_image=RUNWARE_REPORTED_COST, seed=8
    )
    with run_in_thread(create_runware_app(config)) as server:
        yield server


@pytest.fixture(scope="session")
def runflow_emulator() -> Iterator[RunningServer]:
    """A Runflow emulator signing callbacks with the secret the container checks."""
    config = RunflowEmulatorConfig(
        latency=0.15, jitter=0.05, concurrency=50, callback_secret=RUNFLOW_SECRET, seed=9
    )
    with run_in_thread(create_runflow_app(config)) as server:
        yield server


@pytest.fixture(scope="session")
def container(
    test_env: dict[str, str],
    fal_emulator: RunningServer,
    runware_emulator: RunningServer,
    runflow_emulator: RunningServer,
) -> Iterator[Container]:
    """This process's container, built from the test environment (as a worker builds it)."""
    env = {
        **test_env,
        "EDITQ_ENV": "development",
        "EDITQ_API_KEYS": API_KEY,
        "EDITQ_FAL_URL": fal_emulator.url,
        "EDITQ_FAL_JWKS_URL": f"{fal_emulator.url}/.well-known/jwks.json",
        "FAL_KEY": "integration-fal-key",
        "EDITQ_RUNWARE_URL": f"{runware_emulator.url}/v1",
        "RUNWARE_API_KEY": "integration-runware-key",
        "EDITQ_RUNFLOW_URL": runflow_emulator.url,
        "RUNFLOW_API_KEY": "integration-runflow-key",
        "EDITQ_RUNFLOW_CALLBACK_SECRET": RUNFLOW_SECRET,
        "EDITQ_WEBHOOK_SECRET": "integration-webhook-secret",
        "EDITQ_POLL_SECONDS": "0.2",
        "EDITQ_POLL_MAX_SECONDS": "1",
        "EDITQ_BACKOFF_BASE_SECONDS": "0.2",
        "EDITQ_BACKOFF_MAX_SECONDS": "1",
        "EDITQ_LEASE_SECONDS": "5",
        "EDITQ_CALLBACK_SECRET": CALLBACK_SECRET,
        "EDITQ_CALLBACK_TIMEOUT_SECONDS": "2",
        "EDITQ_CALLBACK_MAX_ATTEMPTS": "4",
        "EDITQ_CALLBACK_BACKOFF_BASE_SECONDS": "0.2",
        "EDITQ_CALLBACK_BACKOFF_MAX_SECONDS": "0.5",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("EDITQ_PUBLIC_URL", raising=False)
        forget_process_container()
        built = process_container()
        yield built
        built.close()
        forget_process_container()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> None:
    """Every integration test starts with no jobs."""
    if "container" not in request.fixturenames:
        return
    built: Container = request.getfixturevalue("container")
    with built.engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE jobs, attempts, job_outputs, job_events, provider_health,"
                " callbacks, callback_attempts, batches, batch_rejects, schedulers, scheduler_lease"
            )
        )


def worker_thread(
    container: Container, pool: str = "threads", concurrency: int = 4
) -> AbstractContextManager[object]:
    """A real Celery worker consuming this run's queue, in a thread, while in the block."""
    celery_app.conf.task_default_queue = container.settings.queue
    return start_worker(
        celery_app,
        pool=pool,
        concurrency=concurrency,
        perform_ping_check=False,
        queues=[container.settings.queue],
        loglevel="WARNING",
        shutdown_timeout=10,
    )


@pytest.fixture
def celery_worker(container: Container) -> Iterator[None]:
    """A real Celery worker consuming this run's queue, in a thread."""
    with worker_thread(container):
        yield


@pytest.fixture
def scheduler_loop(container: Container) -> Iterator[None]:
    """The scheduler's tick loop, in a thread."""
    stop = threading.Event()
    thread = threading.Thread(
        target=scheduler.run,
        args=(container.pipeline("scheduler"), container.batches("scheduler"), 0.2, stop),
        daemon=True,
    )
    thread.start()
    yield
    stop.set()
    thread.join(10)
