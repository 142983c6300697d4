"""The design a user writes first, measured beside editq on the same emulator and machine.

One Celery task per job: it submits the edit to fal, polls fal's status URL until the
edit is done, downloads the output and PUTs it to S3 through a presigned URL. The worker
runs prefork with one process per core, so at most that many jobs are in flight.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config
from celery import Celery

if TYPE_CHECKING:
    from bench.harness import Running

#: Prefork processes: one per core, as the Celery docs suggest for a first deployment.
CONCURRENCY = os.cpu_count() or 2
QUEUE = "naive"
POLL_SECONDS = 0.5

app = Celery("naive")
app.conf.update(
    broker_url=os.environ.get("EDITQ_BROKER_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("EDITQ_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    task_acks_late=True,
)


@app.task(name="naive.edit")
def edit(image_url: str, prompt: str) -> str:
    """Submit, poll until done, copy the output to S3: the whole job in one task."""
    fal = os.environ["EDITQ_FAL_URL"]
    headers = {"Authorization": f"Key {os.environ['FAL_KEY']}"}
    with httpx.Client(timeout=60, headers=headers) as http:
        queued = http.post(
            f"{fal}/fal-ai/flux-pro/kontext", json={"prompt": prompt, "image_url": image_url}
        ).json()
        while http.get(queued["status_url"]).json()["status"] != "COMPLETED":
            time.sleep(POLL_SECONDS)
        result = http.get(queued["response_url"]).json()
        image = http.get(result["images"][0]["url"]).content
        key = f"naive/{uuid.uuid4().hex}.jpg"
        http.put(_presign_put(key), content=image).raise_for_status()
    return key


def _presign_put(key: str) -> str:
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["EDITQ_S3_ENDPOINT_URL"],
        region_name=os.environ.get("EDITQ_S3_REGION", "us-east-1"),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url: str = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": os.environ["EDITQ_S3_BUCKET"], "Key": key},
        ExpiresIn=600,
    )
    return url


def run(running: Running, jobs: int, image_url: str) -> float:
    """Run ``jobs`` naive tasks on a prefork worker; returns their makespan in seconds."""
    env: dict[str, Any] = {**os.environ, **running.env}
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter running Celery
        [
            sys.executable, "-m", "celery", "-A", "bench.naive", "worker",
            "--pool", "prefork", "--concurrency", str(CONCURRENCY), "--queues", QUEUE,
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    app.conf.update(
        broker_url=running.env["EDITQ_BROKER_URL"], result_backend=running.env["EDITQ_BROKER_URL"]
    )
    try:
        return _timed(image_url, jobs)
    finally:
        # Results sit in reference cycles. Collected after Valkey stops, each one's
        # finalizer would fail to unsubscribe and print a traceback.
        gc.collect()
        worker.terminate()
        worker.wait(30)


def _timed(image_url: str, jobs: int) -> float:
    # One warm-up task, so that the worker's start is not counted.
    edit.apply_async((image_url, "warm up"), queue=QUEUE).get(timeout=120)
    started = time.perf_counter()
    results = [edit.apply_async((image_url, f"edit {i}"), queue=QUEUE) for i in range(jobs)]
    for result in results:
        result.get(timeout=600)
    return time.perf_counter() - started
