"""Starting editq's own processes (emulator, api, worker, scheduler) and stopping them.

Used by ``editq dev``, ``editq demo`` and the acceptance tests, so all three run the very
same commands a user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx


class StackError(Exception):
    """A process of the stack did not start."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(
    url: str, deadline_seconds: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``url`` answers 200, or raise :class:`StackError` at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{url}: the process exited with {proc.returncode}")
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StackError(f"{url} not ready after {deadline_seconds:.0f} s: {last}")


@dataclass
class Stack:
    """Child processes running ``editq`` subcommands with one environment."""

    env: Mapping[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: Sequence[str], ready_url: str | None = None) -> None:
        """Start ``editq <args>`` as ``name``; wait for ``ready_url`` when given."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with log.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter running our own module
                [sys.executable, "-m", "worker", *args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        if ready_url:
            try:
                wait_http(ready_url, 60, proc)
            except StackError as exc:
                raise StackError(f"{name} did not start ({exc}); see {log}") from exc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of ``name`` (its whole process group)."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM everything, then SIGKILL what is still running at the deadline."""
        for name in reversed(list(self.procs)):
            self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(name)
                proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def editq_env(base: Mapping[str, str], fal_url: str, public_url: str | None) -> dict[str, str]:
    """The environment that points editq's processes at a local fal emulator."""
    env = dict(base)
    env.update(
        EDITQ_FAL_URL=fal_url,
        EDITQ_FAL_JWKS_URL=f"{fal_url}/.well-known/jwks.json",
        FAL_KEY=env.get("FAL_KEY", "local-emulator-key"),
        EDITQ_ALLOW_PRIVATE_URLS="1",
    )
    if public_url:
        env["EDITQ_PUBLIC_URL"] = public_url
    return env


def start_all(stack: Stack, *, api_port: int, fal_port: int, worker_concurrency: int = 2) -> None:
    """Start the fal emulator, the API, a worker and the scheduler, in that order."""
    stack.start(
        "fal-emulator",
        ["emulate", "fal", "--port", str(fal_port)],
        f"http://127.0.0.1:{fal_port}/.well-known/jwks.json",
    )
    stack.start("api", ["api", "--port", str(api_port)], f"http://127.0.0.1:{api_port}/readyz")
    stack.start("worker", ["worker", "--concurrency", str(worker_concurrency)])
    stack.start("scheduler", ["scheduler"])
