"""``editq demo``: a sample catalog edited end to end, on the embedded services.

It starts what it needs (services, the three provider emulators, api, worker, scheduler),
submits the catalog as one CSV batch over the HTTP API (a row per product photo), follows
the batch's progress, prints a summary from its ``results.jsonl``, saves the outputs, and
stops everything it started.
"""

from __future__ import annotations

import csv
import io
import json
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

from worker.config import load_settings
from worker.dev import services
from worker.dev.processes import Ports, Processes, local_env, prepare, start_all
from worker.dev.samples import catalog
from worker.storage.base import Storage
from worker.wiring import build

PROVIDERS = ("fal", "runware", "runflow")
PROMPT = "Replace the background with a sunlit beach, keep the {product} unchanged"
DEADLINE_SECONDS = 90
FINISHED = {"completed", "canceled"}


def run_demo(home: Path, *, count: int, out: Path, console: Console) -> bool:
    """Run the demo; True when every job succeeded."""
    started_services = not all(services.status(home).values())
    console.print("[bold]1.[/bold] embedded PostgreSQL, Valkey and S3 ...")
    ports = Ports.free()
    api_url = f"http://127.0.0.1:{ports.api}"
    env = local_env(prepare(home), ports, webhooks=True)
    os.environ.update(env)
    try:
        with Processes(env, home / "logs") as stack:
            console.print("[bold]2.[/bold] provider emulators, api, worker and scheduler ...")
            start_all(stack, ports)
            container = build(load_settings())
            with httpx.Client(base_url=api_url, headers=_auth(env), timeout=30) as api:
                console.print(f"[bold]3.[/bold] {count} product photos, one CSV batch")
                batch_id = _submit_catalog(api, container.storage, count)
                batch = _follow(api, batch_id, count, console)
                results = _results(api, batch)
            container.close()
        ok = _summarise(results, count, out, console)
    finally:
        if started_services:
            services.down(home)
    return ok


def _auth(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['EDITQ_API_KEYS'].split(',')[0]}"}


def _submit_catalog(api: httpx.Client, storage: Storage, count: int) -> str:
    run = uuid.uuid4().hex[:8]  # a new run edits the catalog again rather than reusing jobs
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["external_id", "image_url", "prompt", "aspect_ratio", "providers"])
    for i, (sku, product, photo) in enumerate(catalog(count)):
        key = f"inputs/demo/{run}/{sku}.jpg"
        storage.put(key, photo, "image/jpeg")
        # Spread the catalog over the three providers, each with the others as fallback.
        providers = " ".join([*PROVIDERS[i % 3 :], *PROVIDERS[: i % 3]])
        url = storage.presign_get(key, 3600)
        writer.writerow([sku, url, PROMPT.format(product=product), "1:1", providers])
    answer = api.post(
        "/v1/batches",
        content=rows.getvalue(),
        headers={"Content-Type": "text/csv", "Idempotency-Key": f"demo-{run}"},
    )
    answer.raise_for_status()
    batch_id: str = answer.json()["id"]
    return batch_id


def _follow(api: httpx.Client, batch_id: str, count: int, console: Console) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]4.[/bold] editing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[flying]} in flight, ${task.fields[cost]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("batch", total=count, flying=0, cost="0.00")
        while True:
            batch: dict[str, Any] = api.get(f"/v1/batches/{batch_id}").json()
            done = batch["done"] + batch["failed"] + batch["canceled"]
            cost = f"{batch['cost_usd']:.2f}"
            progress.update(bar, completed=done, flying=batch["in_flight"], cost=cost)
            if batch["state"] in FINISHED or time.monotonic() > deadline:
                return batch
            time.sleep(0.5)


def _results(api: httpx.Client, batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each row's line of results.jsonl, with its job (for the provider and latency)."""
    if batch["state"] not in FINISHED:
        return {}
    files = api.get(f"/v1/batches/{batch['id']}/results").json()
    lines = [json.loads(x) for x in httpx.get(files["results"]["url"]).text.splitlines()]
    return {
        line["external_id"]: line | {"job": api.get(f"/v1/jobs/{line['job_id']}").json()}
        for line in lines
    }


def _summarise(results: dict[str, dict[str, Any]], count: int, out: Path, console: Console) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    table = Table("product", "state", "provider", "latency", "output", "bytes", title="editq demo")
    for sku, result in sorted(results.items()):
        job = result["job"]
        latency, size, nbytes = "", "", ""
        if result["state"] == "succeeded":
            first = result["outputs"][0]
            latency = f"{_ts(job['completed_at']) - _ts(job['created_at']):.1f} s"
            size, nbytes = f"{first['width']}x{first['height']}", str(first["bytes"])
            suffix = first["key"].rsplit(".", 1)[-1]
            (out / f"{sku}.{suffix}").write_bytes(httpx.get(first["url"]).content)
        table.add_row(sku, result["state"], job.get("provider") or "", latency, size, nbytes)
    console.print(table)
    succeeded = sum(1 for r in results.values() if r["state"] == "succeeded")
    colour = "green" if succeeded == count else "red"
    console.print(f"[{colour}]{succeeded}/{count} succeeded[/{colour}]; outputs in {out}/")
    return succeeded == count


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
