"""The first commands a new user types, with nothing set up: one line, a fix, an exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def editq(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``editq`` command with exactly ``env`` (and a PATH)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unreachable_database_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql+psycopg://editq:secret@127.0.0.1:{port}/editq"
    done = editq("jobs", "list", env={"EDITQ_DATABASE_URL": url}, cwd=tmp_path)
    assert done.returncode == 6
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "service_unreachable" in lines[0] and f"PostgreSQL at 127.0.0.1:{port}" in lines[0]
    assert 'eval "$(editq services env)"' in lines[0]
    assert "secret" not in lines[0]  # the URL's password stays out


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    done = editq("jobs", "list", env={"EDITQ_CALLBACK_SECRET": "hunter2"}, cwd=tmp_path)
    assert done.returncode == 7
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "EDITQ_CALLBACK_SECRET" in done.stderr and "editq callbacks new-secret" in done.stderr
    assert "hunter2" not in done.stderr
