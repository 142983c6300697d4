"""The process group the tests and the benchmark run: a process that dies is reported."""

from __future__ import annotations

from pathlib import Path

from tests.waiting import wait_until
from worker.dev.processes import Processes


def test_a_process_that_ended_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    with Processes(env={}, logs=tmp_path) as stack:
        stack.start("typo", ["no-such-command"])

        exited = wait_until(stack.exited, timeout=30, what="the process to end")

        assert exited == {"typo": 2}
        assert "No such command" in (tmp_path / "typo.log").read_text()
