"""``editq demo``: a sample catalog edited end to end, on the embedded services.

It starts what it needs (services, fal emulator, api, worker, scheduler), submits one edit
per product photo over the HTTP API, shows progress, prints a summary, saves the outputs,
and stops everything it started.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker import services
from worker.config import load_settings
from worker.devstack import prepare
from worker.samples import catalog
from worker.stack import Ports, Stack, local_env, start_all
from worker.storage.base import Storage
from worker.wiring import build

PROVIDERS = ("fal", "runware", "runflow")
PROMPT = "Replace the background with a sunlit beach, keep the {product} unchanged"
DEADLINE_SECONDS = 90
TERMINAL = {"succeeded", "failed", "canceled"}


def run_demo(home: Path, *, count: int, out: Path, console: Console) -> bool:
    """Run the demo; True when every job succeeded."""
    started_services = not all(services.status(home).values())
    console.print("[bold]1.[/bold] embedded PostgreSQL, Valkey and S3 ...")
    ports = Ports.free()
    api_url = f"http://127.0.0.1:{ports.api}"
    env = local_env(prepare(home), ports, webhooks=True)
    os.environ.update(env)
    try:
        with Stack(env, home / "logs") as stack:
            console.print("[bold]2.[/bold] provider emulators, api, worker and scheduler ...")
            start_all(stack, ports)
            container = build(load_settings())
            with httpx.Client(base_url=api_url, headers=_auth(env), timeout=30) as api:
                console.print(f"[bold]3.[/bold] {count} product photos, one edit each")
                ids = _submit_catalog(api, container.storage, count)
                jobs = _follow(api, ids, console)
            container.close()
        ok = _summarise(jobs, api_url, out, console)
    finally:
        if started_services:
            services.down(home)
    return ok


def _auth(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['EDITQ_API_KEYS'].split(',')[0]}"}


def _submit_catalog(api: httpx.Client, storage: Storage, count: int) -> dict[str, str]:
    ids: dict[str, str] = {}
    run = uuid.uuid4().hex[:8]  # a new run edits the catalog again rather than reusing jobs
    for i, (sku, product, photo) in enumerate(catalog(count)):
        key = f"inputs/demo/{run}/{sku}.jpg"
        storage.put(key, photo, "image/jpeg")
        body = {
            "input": {
                "prompt": PROMPT.format(product=product),
                "image_url": storage.presign_get(key, 3600),
                "aspect_ratio": "1:1",
            },
            # Spread the catalog over the three providers, each with the others as fallback.
            "providers": [*PROVIDERS[i % 3 :], *PROVIDERS[: i % 3]],
            "external_id": sku,
            "metadata": {"product": product},
        }
        answer = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": f"demo-{run}-{sku}"})
        answer.raise_for_status()
        ids[sku] = answer.json()["id"]
    return ids


def _follow(api: httpx.Client, ids: dict[str, str], console: Console) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    columns = (
        TextColumn("[bold]4.[/bold] editing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("jobs", total=len(ids))
        while time.monotonic() < deadline:
            for sku, job_id in ids.items():
                if jobs.get(sku, {}).get("state") not in TERMINAL:
                    jobs[sku] = api.get(f"/v1/jobs/{job_id}").json()
            done = sum(1 for j in jobs.values() if j["state"] in TERMINAL)
            progress.update(bar, completed=done)
            if done == len(ids):
                break
            time.sleep(0.5)
    return jobs


def _summarise(jobs: dict[str, dict[str, Any]], api_url: str, out: Path, console: Console) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    table = Table("product", "state", "provider", "latency", "output", "bytes", title="editq demo")
    for sku, job in sorted(jobs.items()):
        latency, size, nbytes = "", "", ""
        if job["state"] == "succeeded":
            first = job["outputs"][0]
            created = _ts(job["created_at"])
            latency = f"{_ts(job['completed_at']) - created:.1f} s"
            size, nbytes = f"{first['width']}x{first['height']}", str(first["bytes"])
            suffix = first["key"].rsplit(".", 1)[-1]
            (out / f"{sku}.{suffix}").write_bytes(httpx.get(first["url"]).content)
        table.add_row(sku, job["state"], job.get("provider") or "", latency, size, nbytes)
    console.print(table)
    succeeded = sum(1 for j in jobs.values() if j["state"] == "succeeded")
    colour = "green" if succeeded == len(jobs) else "red"
    console.print(f"[{colour}]{succeeded}/{len(jobs)} succeeded[/{colour}]; outputs in {out}/")
    return succeeded == len(jobs)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
