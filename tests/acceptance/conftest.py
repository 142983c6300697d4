"""Acceptance fixtures: the real ``editq`` processes (emulator, api, worker, scheduler).

Each test module gets its own stack, started with the same commands a user runs, and talks
to it only over HTTP: the API as a producer would, the emulator's ``/_emulator`` endpoints
to inject faults and count what the provider was asked to do.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.waiting import wait_until
from worker.dev.processes import Ports, Processes, local_env, start_all

API_KEY = "acceptance-key"
TERMINAL = {"succeeded", "failed", "canceled"}
#: The emulator's behaviour at the start of every test.
CALM = {
    "latency": 0.3,
    "jitter": 0.1,
    "rate_5xx": 0.0,
    "rate_429": 0.0,
    "rate_422": 0.0,
    "rate_moderated": 0.0,
    "rate_blackout": 0.0,
    "rate_flagged": 0.0,
    "rate_unchanged": 0.0,
    "rate_wrong_size": 0.0,
    "moderated_words": [],
    "webhook_duplicates": 0,
    "webhook_drop_rate": 0.0,
    "webhook_retry_delays": [0.2, 0.5, 1.0],
}


PROVIDERS = ("fal", "runware", "runflow")


@dataclass
class Running:
    """A running stack, a client for its API and one for each provider emulator."""

    stack: Processes
    api: httpx.Client
    emulators: dict[str, httpx.Client]

    def submit(self, provider: str = "fal", **changes: Any) -> dict[str, Any]:
        """POST one job for ``provider`` (unless ``providers`` is given) and return it."""
        from tests.factories import job_body

        changes.setdefault("providers", [provider])
        answer = self.api.post("/v1/jobs", json=job_body(**changes))
        assert answer.status_code == 201, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def post_batch(self, rows: Sequence[dict[str, Any]], **query: Any) -> dict[str, Any]:
        """POST ``rows`` as a JSONL batch (``query`` its options) and return it, accepted."""
        answer = self.api.post(
            "/v1/batches",
            params=query,
            content="".join(json.dumps(row) + "\n" for row in rows),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert answer.status_code == 201, answer.text
        batch: dict[str, Any] = answer.json()
        return batch

    def job(self, job_id: str, events: bool = True) -> dict[str, Any]:
        """GET one job (with its history)."""
        job: dict[str, Any] = self.api.get(f"/v1/jobs/{job_id}", params={"events": events}).json()
        return job

    def wait_terminal(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the job is succeeded, failed or canceled."""

        def finished() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in TERMINAL else None

        return wait_until(finished, timeout=timeout, interval=0.1, what=f"job {job_id} to finish")

    def editq(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``editq <args>`` with the stack's environment, as a user's shell would."""
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env={**self.stack.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def faults(self, provider: str = "fal", **changes: Any) -> None:
        """Change an emulator's behaviour."""
        answer = self.emulators[provider].patch("/_emulator/config", json=changes)
        assert answer.status_code == 200, answer.text

    def stats(self, provider: str = "fal") -> dict[str, int]:
        """An emulator's counters."""
        stats: dict[str, int] = self.emulators[provider].get("/_emulator/stats").json()
        return stats

    def provider_outputs(self, provider: str, request_id: str) -> list[bytes]:
        """The images an emulator produced for ``request_id``, read the provider's way."""
        client = self.emulators[provider]
        if provider == "fal":
            urls = [
                i["url"]
                for i in client.get(f"/fal-ai/flux-pro/requests/{request_id}").json()["images"]
            ]
        elif provider == "runflow":
            urls = client.get(f"/v1/runs/{request_id}").json()["output"]["image_urls"]
        else:
            task = [{"taskType": "getResponse", "taskUUID": request_id}]
            urls = [i["imageURL"] for i in client.post("/v1", json=task).json()["data"]]
        return [client.get(url).content for url in urls]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_stack(
    test_env: dict[str, str],
    logs: Path,
    *,
    webhooks: bool,
    extra_env: dict[str, str] | None = None,
    emulator_args: Sequence[str] = (),
) -> Iterator[Running]:
    """Start emulator, api, worker and scheduler; stop them afterwards."""
    ports = Ports.free()
    api_url = f"http://127.0.0.1:{ports.api}"
    env = local_env(test_env, ports, webhooks=webhooks)
    env.update(
        EDITQ_ENV="development",
        EDITQ_API_KEYS=API_KEY,
        EDITQ_QUEUE=f"{test_env['EDITQ_QUEUE']}-{uuid.uuid4().hex[:6]}",
        EDITQ_TICK_SECONDS="0.2",
        EDITQ_POLL_SECONDS="0.3",
        EDITQ_POLL_MAX_SECONDS="1",
        EDITQ_BACKOFF_BASE_SECONDS="0.3",
        EDITQ_BACKOFF_MAX_SECONDS="1",
        EDITQ_LEASE_SECONDS="10",
        # A forged webhook test makes a refetch; the rotation test needs the next one soon.
        EDITQ_FAL_JWKS_REFETCH_SECONDS="0.5",
    )
    env.update(extra_env or {})
    _new_deployment(test_env["EDITQ_DATABASE_URL"])
    with Processes(env, logs) as stack:
        start_all(stack, ports, emulator_args)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        keys = {"fal": "Key test", "runware": "Bearer test", "runflow": "Bearer test"}
        emulators = {
            p: httpx.Client(
                base_url=f"http://127.0.0.1:{getattr(ports, p)}",
                headers={"Authorization": keys[p]},
                timeout=30,
            )
            for p in PROVIDERS
        }
        with httpx.Client(base_url=api_url, headers=headers, timeout=30) as api:
            yield Running(stack, api, emulators)
        for client in emulators.values():
            client.close()


def _new_deployment(database_url: str) -> None:
    """Forget the schedulers of stacks that ran before (a killed one keeps its lease until
    it expires): each stack is a deployment of its own, whose scheduler leads at once."""
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE scheduler_lease, schedulers"))
    engine.dispose()


@pytest.fixture(autouse=True)
def _calm_emulator(request: pytest.FixtureRequest) -> None:
    """Every acceptance test starts with a well-behaved provider."""
    stacks = ("webhook_stack", "polling_stack", "cli_stack", "storm_stack", "quality_stack")
    for name in (*stacks, "chain_stack", "metrics_stack", "console_stack"):
        if name in request.fixturenames:
            running: Running = request.getfixturevalue(name)
            for provider in PROVIDERS:
                running.faults(provider, **CALM)
