"""The real stack for a benchmark run: embedded services, a fal emulator, api, worker, scheduler.

Each scenario gets a fresh stack with its own settings, and talks to it as a producer does:
a batch over the HTTP API, its progress over the HTTP API. Timings come from the jobs'
own timestamps in PostgreSQL; CPU and memory from ``psutil`` over each process tree.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
from sqlalchemy import create_engine, text

from worker.config import load_settings
from worker.dev import services
from worker.dev.processes import Ports, Processes, local_env
from worker.dev.samples import product_photo
from worker.dev.services.home import Home
from worker.migrate import upgrade
from worker.wiring import build

API_KEY = "bench-key"
PROMPT = "Replace the background with a sunlit beach"
#: Twice the threads of ``editq worker`` (16 by default).
WARM_UP_JOBS = 32


@dataclass
class Running:
    """A running stack and what a scenario needs to drive and measure it."""

    stack: Processes
    env: dict[str, str]
    api: httpx.Client
    #: The fal emulator's admin client; ``emulators`` has every running one's.
    emulator: httpx.Client
    home: Path
    emulators: dict[str, httpx.Client] = field(default_factory=dict)

    def configure_emulator(self, provider: str = "fal", **changes: Any) -> None:
        """Change an emulator's latency, jitter, concurrency or faults."""
        client = self.emulators.get(provider, self.emulator)
        client.patch("/_emulator/config", json=changes).raise_for_status()

    def source_url(self, size: tuple[int, int] = (64, 64)) -> str:
        """A small product photo in the bucket, presigned for the emulator to read."""
        container = build(load_settings())
        key = f"inputs/bench/{uuid.uuid4().hex}.jpg"
        container.storage.put(key, product_photo("mug", 1, size=size), "image/jpeg")
        url = container.storage.presign_get(key, 6 * 3600)
        container.close()
        return url

    def submit_batch(self, rows: int, image_url: str, **options: Any) -> tuple[str, float]:
        """POST a JSONL batch of ``rows`` edits (``options``: the batch's query, such as
        ``providers`` and ``routing``); returns its id and the seconds the POST took."""
        body = jsonl(rows, image_url)
        started = time.perf_counter()
        answer = self.api.post(
            "/v1/batches",
            content=body,
            params=options,
            headers={"Content-Type": "application/x-ndjson"},
            timeout=600,
        )
        took = time.perf_counter() - started
        answer.raise_for_status()
        return str(answer.json()["id"]), took

    def warm_up(self) -> None:
        """Take a few jobs end to end, so the clock starts on running, connected processes.

        A freshly started worker spends its first seconds importing and connecting, and
        each of its threads pays once for its first task; a catalog normally lands on
        workers that have been up for hours. Twice as many jobs as the worker has
        threads make every thread run, and every pool hold the connections it keeps.
        """
        batch_id, _ = self.submit_batch(WARM_UP_JOBS, self.source_url())
        batch = self.wait_batch(batch_id, timeout=60)
        if batch["done"] != WARM_UP_JOBS:
            raise RuntimeError(f"the warm-up jobs did not all succeed: {batch}")

    def wait_batch(self, batch_id: str, timeout: float) -> dict[str, Any]:
        """Poll the batch until it is completed or canceled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch: dict[str, Any] = self.api.get(f"/v1/batches/{batch_id}").json()
            if batch["state"] in {"completed", "canceled"}:
                return batch
            time.sleep(0.25)
        raise TimeoutError(f"batch {batch_id} did not finish within {timeout:.0f} s")

    def sql(self, query: str, **params: Any) -> list[Any]:
        """Rows of a read-only query on the stack's database."""
        engine = create_engine(self.env["EDITQ_DATABASE_URL"])
        with engine.connect() as conn:
            rows = list(conn.execute(text(query), params))
        engine.dispose()
        return rows

    def trees(self) -> dict[str, list[psutil.Process]]:
        """Every process of each part: editq's own, the services it uses, and the emulator."""
        parts = {
            "api": self.stack.procs["api"].pid,
            "worker": self.stack.procs["worker"].pid,
            "scheduler": self.stack.procs["scheduler"].pid,
            "postgres": service_pid(self.home, "postgres"),
            "valkey": service_pid(self.home, "valkey"),
            "s3": service_pid(self.home, "seaweedfs"),
        }
        trees = {}
        for name, pid in parts.items():
            root = psutil.Process(pid)
            trees[name] = [root, *root.children(recursive=True)]
        # Every provider emulator running, together: the providers' side of the work.
        trees["emulator"] = [
            proc
            for name, popen in self.stack.procs.items()
            if name.endswith("-emulator")
            for root in [psutil.Process(popen.pid)]
            for proc in (root, *root.children(recursive=True))
        ]
        return trees


def cpu_seconds(trees: Mapping[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) used so far by each process of each part, by pid."""
    used: dict[str, dict[int, float]] = {}
    for name, procs in trees.items():
        used[name] = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            used[name][proc.pid] = times.user + times.system
    return used


def cpu_between(
    before: Mapping[str, Mapping[int, float]], after: Mapping[str, Mapping[int, float]]
) -> dict[str, float]:
    """CPU seconds each part used between two readings; a process new since counts whole.

    PostgreSQL starts a backend per connection, and connection pools open them on first
    use, so the second reading must enumerate the processes afresh.
    """
    return {
        name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
        for name, pids in after.items()
    }


class MachineBusy:
    """How busy every CPU of the machine is from now until :meth:`share` is called."""

    def __init__(self) -> None:
        self._start = psutil.cpu_times()

    def share(self) -> float:
        """The share of all CPU time spent busy (0 to 1) since this was made."""
        end = psutil.cpu_times()
        idle = (end.idle + getattr(end, "iowait", 0.0)) - (
            self._start.idle + getattr(self._start, "iowait", 0.0)
        )
        total = sum(end) - sum(self._start)
        return 1.0 - idle / total if total > 0 else 0.0


def memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    """Resident (RSS) and proportional (PSS) memory of a process tree, in MB.

    RSS counts a page shared by a prefork parent and its children once per process; PSS
    splits each shared page among its sharers, so its sum is what the tree really holds.
    """
    rss = pss = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 1e6, pss / 1e6


def service_pid(home: Path, service: str) -> int:
    """The main process of an embedded service (PostgreSQL's postmaster, say)."""
    return int(Home.at(home).pidfile(service).read_text().split()[0])


def jsonl(rows: int, image_url: str) -> bytes:
    """A catalog of ``rows`` edits of one source image, as JSONL."""
    out = io.StringIO()
    for i in range(rows):
        out.write(
            json.dumps({"external_id": f"SKU-{i:06d}", "image_url": image_url, "prompt": PROMPT})
        )
        out.write("\n")
    return out.getvalue().encode()


@contextmanager
def stack(
    home: Path,
    settings: Mapping[str, str],
    *,
    processes: tuple[str, ...] = ("worker", "scheduler"),
    emulators: tuple[str, ...] = ("fal",),
) -> Iterator[Running]:
    """Fresh services under ``home`` plus the ``emulators``, the api and ``processes``."""
    env = dict(services.up(home).values)
    upgrade(env["EDITQ_DATABASE_URL"])
    ports = Ports.free()
    env = local_env(env, ports, webhooks=True)
    env.update({"EDITQ_API_KEYS": API_KEY, "EDITQ_PROVIDERS": "fal", **settings})
    # This process builds a container too (to upload sources), from the same settings; a
    # fresh boto3 session, since the default one keeps the credentials of an earlier stack.
    os.environ.update(env)
    boto3.setup_default_session()
    try:
        with Processes(env, home / "logs") as running:
            fal = f"http://127.0.0.1:{ports.fal}"
            urls = {name: f"http://127.0.0.1:{getattr(ports, name)}" for name in emulators}
            for name, url in urls.items():
                port = str(getattr(ports, name))
                running.start(
                    f"{name}-emulator", ["emulate", name, "--port", port], url + "/_emulator/stats"
                )
            running.start(
                "api", ["api", "--port", str(ports.api)], f"http://127.0.0.1:{ports.api}/readyz"
            )
            if "worker" in processes:
                running.start("worker", ["worker", "--loglevel", "WARNING"])
            if "scheduler" in processes:
                running.start("scheduler", ["scheduler"])
            with (
                httpx.Client(
                    base_url=f"http://127.0.0.1:{ports.api}",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=60,
                ) as api,
                httpx.Client(
                    base_url=fal, headers={"Authorization": "Key bench"}, timeout=60
                ) as emulator,
            ):
                admins = {
                    name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()
                }
                ready = Running(running, env, api, emulator, home, admins)
                try:
                    if "worker" in processes and "scheduler" in processes:
                        ready.warm_up()
                    yield ready
                finally:
                    for client in admins.values():
                        client.close()
    finally:
        services.down(home)
