"""A catalog run as a retailer does it: a 2,000-row CSV with bad rows, through ``editq batch``.

The file goes in with ``editq batch submit --wait`` against the real stack; the result
files are checked row by row against the input, the outputs are downloaded by external id,
and the batch's signed ``batch.completed`` callback is verified with ``standardwebhooks``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from emulators.server import run_in_thread
from tests.acceptance.conftest import Running, start_stack
from tests.emulator_support import Receiver
from tests.waiting import wait_until
from worker.config import load_settings
from worker.dev.samples import catalog
from worker.wiring import build

pytestmark = pytest.mark.acceptance

ROWS = 2000
BAD_ROWS = 50
PHOTOS = 20


@pytest.fixture(scope="module")
def catalog_stack(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    yield from start_stack(test_env, tmp_path_factory.mktemp("logs"), webhooks=True)


def photo_urls(stack: Running) -> list[str]:
    """A few product photos in the bucket, as presigned URLs a provider can read."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in stack.stack.env.items():
            env.setenv(key, value)
        container = build(load_settings())
    urls = []
    for sku, _, photo in catalog(PHOTOS):
        key = f"inputs/catalog-test/{sku}.jpg"
        container.storage.put(key, photo, "image/jpeg")
        urls.append(container.storage.presign_get(key, 3600))
    container.close()
    return urls


#: Ways a row can be bad, and the field and rule each must be reported with.
BREAKS: list[tuple[str, str, Any]] = [
    ("num_images", "less_than_equal", lambda row: row | {"num_images": "9"}),
    ("prompt", "missing", lambda row: row | {"prompt": ""}),
    ("image_url", "value_error", lambda row: row | {"image_url": "ftp://example.com/a.jpg"}),
    ("aspect_ratio", "literal_error", lambda row: row | {"aspect_ratio": "5:4"}),
    ("external_id", "duplicate", lambda row: row | {"external_id": "SKU-00001"}),
]


def write_catalog(path: Path, urls: list[str]) -> dict[int, tuple[str, str, str]]:
    """Write the CSV; returns line -> (external id, field, rule) of every bad row."""
    bad_positions = set(random.Random(5).sample(range(2, ROWS + 1), BAD_ROWS))
    expected: dict[int, tuple[str, str, str]] = {}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(
            f, ["external_id", "image_url", "prompt", "aspect_ratio", "num_images"]
        )
        writer.writeheader()
        for i in range(1, ROWS + 1):
            row = {
                "external_id": f"SKU-{i:05d}",
                "image_url": urls[i % len(urls)],
                "prompt": "Replace the background with a sunlit beach",
                "aspect_ratio": "1:1",
                "num_images": "1",
            }
            if i in bad_positions:
                field, rule, breaks = BREAKS[len(expected) % len(BREAKS)]
                row = breaks(row)
                expected[i + 1] = (row["external_id"], field, rule)  # line 1 is the header
            writer.writerow(row)
    return expected


def test_a_2000_row_catalog_with_50_bad_rows_end_to_end(
    catalog_stack: Running, tmp_path: Path
) -> None:
    receiver = Receiver()
    secret = catalog_stack.stack.env["EDITQ_CALLBACK_SECRET"]
    path = tmp_path / "catalog.csv"
    bad = write_catalog(path, photo_urls(catalog_stack))
    good = {f"SKU-{line - 1:05d}" for line in range(2, ROWS + 2) if line not in bad}

    with run_in_thread(receiver.app) as hooks:
        hook = f"{hooks.url}/hook"
        run = catalog_stack.editq(
            "batch", "submit", str(path), "--wait", "--callback-url", hook, timeout=600
        )
        assert run.returncode == 0, run.stderr[-3000:]
        batch_id = run.stdout.splitlines()[0].strip()
        assert f"{ROWS - BAD_ROWS} row(s) accepted, {BAD_ROWS} rejected" in run.stderr
        wait_until(lambda: receiver.calls, timeout=30, what="the batch.completed callback")

    # The producer's callback is signed to the Standard Webhooks spec.
    [(headers, body)] = receiver.calls
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "batch.completed"
    assert event["data"]["id"] == batch_id and event["data"]["state"] == "completed"
    assert event["data"]["rows"] == {"total": ROWS, "accepted": ROWS - BAD_ROWS, "rejected": 50}

    batch = catalog_stack.api.get(f"/v1/batches/{batch_id}").json()
    assert batch["state"] == "completed"
    assert batch["done"] == ROWS - BAD_ROWS and batch["failed"] == 0
    assert batch["cost_usd"] == pytest.approx((ROWS - BAD_ROWS) * 0.04)

    files = catalog_stack.api.get(f"/v1/batches/{batch_id}/results").json()
    results = [json.loads(x) for x in httpx.get(files["results"]["url"]).text.splitlines()]
    errors = [json.loads(x) for x in httpx.get(files["errors"]["url"]).text.splitlines()]

    # results.jsonl: one succeeded line per good row, each with a readable output.
    assert {r["external_id"] for r in results} == good and len(results) == len(good)
    assert {r["state"] for r in results} == {"succeeded"}
    for result in random.Random(1).sample(results, 25):
        [output] = result["outputs"]
        image = httpx.get(output["url"])
        assert image.status_code == 200
        assert hashlib.sha256(image.content).hexdigest() == output["sha256"]
    # errors.jsonl: every bad row, by line, with the field and the rule it broke.
    assert {e["line"]: (e["external_id"], e["field"], e["rule"]) for e in errors} == bad
    assert {e["code"] for e in errors} == {"invalid_row"}

    # The outputs, downloaded and named by external id.
    out = tmp_path / "out"
    download = catalog_stack.editq("batch", "results", batch_id, "-o", str(out), timeout=300)
    assert download.returncode == 0, download.stderr[-3000:]
    assert {p.stem for p in out.glob("*.jpg")} == good
    assert (out / "errors.jsonl").read_text().count("\n") == BAD_ROWS


def test_batch_status_and_a_bad_file_at_the_command_line(
    catalog_stack: Running, tmp_path: Path
) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("external_id,image_url,prompt,colour\nA,https://x/y.jpg,z,red\n")
    run = catalog_stack.editq("batch", "submit", str(path))
    assert run.returncode == 2
    assert "batch_file_invalid" in run.stderr and "colour" in run.stderr

    missing = catalog_stack.editq("batch", "status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 3 and "batch_not_found" in missing.stderr
