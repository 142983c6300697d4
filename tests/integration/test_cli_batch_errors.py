"""``editq batch submit`` refusing a file: every bad row listed, the file's own line named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def submit(path: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "batch", "submit", str(path), *options],
        env={**os.environ, **env, "EDITQ_ENV": "development"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_strict_lists_every_bad_row_as_the_api_does(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.csv"
    good = "SKU-ok,https://example.com/a.jpg,a beach\n"
    bad = "".join(f"SKU-{i},not-a-url,a beach\n" for i in range(3))
    catalog.write_text("external_id,image_url,prompt\n" + good + bad)
    done = submit(catalog, test_env, "--strict")
    assert done.returncode == 2, done.stderr
    assert "batch_rows_invalid" in done.stderr
    for line in (3, 4, 5):
        assert f"line {line}: image_url" in done.stderr
    assert "Traceback" not in done.stderr
