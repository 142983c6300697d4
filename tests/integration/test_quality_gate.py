"""The quality gate in finalize, on real storage and a real fal emulator that misbehaves.

The acceptance tests prove each policy on every provider; these look at what the gate
keeps: the source read once, rejected outputs in the bucket, the cost of a rejection, and
the gate switched off.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from emulators.fal import FalEmulatorConfig
from emulators.fal import create_app as create_fal_app
from emulators.server import RunningServer, run_in_thread
from models.state import JobState
from tests.factories import job_request
from tests.waiting import wait_until
from worker.database import Database
from worker.dev.samples import product_photo
from worker.pipeline.steps import Pipeline
from worker.providers.fal.adapter import FalProvider
from worker.providers.fal.signature import JwksCache
from worker.values.quality_policy import QualityPolicy
from worker.wiring import Container

pytestmark = pytest.mark.integration


class SourceServer:
    """A real HTTP server holding one source photo, counting the times it is read."""

    def __init__(self) -> None:
        photo = product_photo("mug", 3, size=(320, 240))
        counter = self
        self.reads = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                counter.reads += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(photo)))
                self.end_headers()
                self.wfile.write(photo)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/mug.jpg"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def source() -> Iterator[SourceServer]:
    server = SourceServer()
    yield server
    server.close()


def misbehaving_fal(**faults: float) -> Iterator[RunningServer]:
    config = FalEmulatorConfig(latency=0.05, jitter=0.0, seed=11, **faults)  # type: ignore[arg-type]
    with run_in_thread(create_fal_app(config)) as server:
        yield server


@pytest.fixture(scope="module")
def unchanged_fal() -> Iterator[RunningServer]:
    yield from misbehaving_fal(rate_unchanged=1.0)


@pytest.fixture(scope="module")
def blackout_fal() -> Iterator[RunningServer]:
    yield from misbehaving_fal(rate_blackout=1.0)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def pipeline(
    container: Container, http: httpx.Client, fal: RunningServer, *, gate: bool = True
) -> Pipeline:
    provider = FalProvider(http, jwks=JwksCache(http), base_url=fal.url, key="k")
    policy = dataclasses.replace(container.policy(), quality_gate=gate)
    return Pipeline(
        Database(container.sessions, "test"),
        {"fal": provider},
        container.storage,
        container.fetcher,
        container.queue,
        policy,
        container.leases,
    )


def one_attempt(steps: Pipeline, job_id: uuid.UUID, number: int) -> str:
    """Dispatch, submit and poll attempt ``number``; what its finalize did."""
    assert steps.dispatch() == 1
    assert steps.submit(job_id, number) == "running"
    wait_until(lambda: steps.poll(job_id, number) == "finalizing", timeout=30, what="the result")
    return steps.finalize(job_id, number)


def test_the_source_is_read_once_and_kept_however_many_attempts_are_checked(
    container: Container, http: httpx.Client, unchanged_fal: RunningServer, source: SourceServer
) -> None:
    steps = pipeline(container, http, unchanged_fal)
    request = job_request(providers=("fal",), input={"image_url": source.url})
    request = dataclasses.replace(request, quality=QualityPolicy("by_check", max_retries=2))
    job, _ = container.jobs("test").create(request)

    outcomes = [one_attempt(steps, job.id, number) for number in (1, 2, 3)]

    assert outcomes == ["requeue", "requeue", "fail"]
    detail = container.jobs("test").get(job.id)
    assert (detail.job.state, detail.job.error_code) == (JobState.FAILED, "quality_unchanged")
    # The emulator read the source once per attempt; the gate read it once in all.
    assert source.reads == 3 + 1
    # Every rejected attempt was paid for, and the job's cost says so.
    costs = [a.cost_usd for a in detail.attempts]
    assert all(c is not None and c > 0 for c in costs)
    assert detail.job.cost_usd == sum(c for c in costs if c is not None)


def test_a_rejected_output_stays_in_the_bucket_and_is_not_the_jobs_output(
    container: Container, http: httpx.Client, blackout_fal: RunningServer
) -> None:
    steps = pipeline(container, http, blackout_fal)
    job, _ = container.jobs("test").create(job_request(providers=("fal",)))

    assert one_attempt(steps, job.id, 1) == "fail"

    detail = container.jobs("test").get(job.id)
    assert detail.job.error_code == "content_moderated" and detail.outputs == ()
    (attempt,) = detail.attempts
    assert attempt.quality is not None
    (report,) = attempt.quality
    assert report["key"] == f"outputs/{job.id}/rejected/1/0.jpg"
    with Image.open(io.BytesIO(container.storage.get(report["key"]))) as kept:
        assert kept.convert("L").getextrema() == (0, 0)  # the black frame fal sent
    assert container.storage.head(f"outputs/{job.id}/0.jpg") is None
    events = [e for e in detail.events if e.transition == "fail"]
    assert events[-1].data["quality"] == "moderated"
    assert events[-1].data["rejected"] == [report["key"]]


def test_with_the_gate_off_the_same_output_is_delivered_unchecked(
    container: Container, http: httpx.Client, blackout_fal: RunningServer
) -> None:
    steps = pipeline(container, http, blackout_fal, gate=False)
    job, _ = container.jobs("test").create(job_request(providers=("fal",)))

    assert one_attempt(steps, job.id, 1) == "succeeded"

    detail = container.jobs("test").get(job.id)
    (output,) = detail.outputs
    assert output.quality is None and detail.attempts[0].quality is None
