"""Starting editq's own processes (emulators, api, worker, scheduler) and stopping them.

Used by ``editq dev``, ``editq demo``, the benchmark and the acceptance tests, so all of them
run the very same commands a user would. :func:`run_dev` is ``editq dev``: the embedded
services plus every process, until Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from rich.console import Console

from worker.dev import services
from worker.dev.services.home import choose_ports
from worker.migrate import upgrade
from worker.values.callback_events import new_secret


class ProcessStartFailed(Exception):
    """A process of the stack did not start."""


def wait_http(
    url: str, deadline_seconds: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``url`` answers 200, or raise :class:`ProcessStartFailed` at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessStartFailed(f"{url}: the process exited with {proc.returncode}")
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ProcessStartFailed(f"{url} not ready after {deadline_seconds:.0f} s: {last}")


@dataclass
class Processes:
    """Child processes running ``editq`` subcommands with one environment."""

    env: Mapping[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        args: Sequence[str],
        ready_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``editq <args>`` as ``name`` (``env`` added to the stack's); wait for
        ``ready_url`` when given."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with log.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter running our own module
                [sys.executable, "-m", "worker", *args],
                env={**os.environ, **self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        if ready_url:
            try:
                wait_http(ready_url, 60, proc)
            except ProcessStartFailed as exc:
                raise ProcessStartFailed(f"{name} did not start ({exc}); see {log}") from exc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of ``name`` (its whole process group)."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)

    def exited(self) -> dict[str, int]:
        """The processes that have ended, with their exit codes."""
        codes = {name: proc.poll() for name, proc in self.procs.items()}
        return {name: code for name, code in codes.items() if code is not None}

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

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Ports:
    """Where the API, the three provider emulators and the metrics of the worker and the
    scheduler listen."""

    api: int
    fal: int
    runware: int
    runflow: int
    worker_metrics: int
    scheduler_metrics: int

    @classmethod
    def free(cls) -> Ports:
        """Distinct ports nobody listens on right now."""
        return cls(**choose_ports([f.name for f in dataclasses.fields(cls)], {}))


def local_env(base: Mapping[str, str], ports: Ports, *, webhooks: bool) -> dict[str, str]:
    """The environment that points editq's processes at the local provider emulators.

    With ``webhooks`` the providers call the API back; without, running jobs are polled.
    """
    env = dict(base)
    fal = f"http://127.0.0.1:{ports.fal}"
    env.update(
        EDITQ_FAL_URL=fal,
        EDITQ_FAL_JWKS_URL=f"{fal}/.well-known/jwks.json",
        FAL_KEY=env.get("FAL_KEY", "local-emulator-key"),
        EDITQ_RUNWARE_URL=f"http://127.0.0.1:{ports.runware}/v1",
        RUNWARE_API_KEY=env.get("RUNWARE_API_KEY", "local-emulator-key"),
        EDITQ_RUNFLOW_URL=f"http://127.0.0.1:{ports.runflow}",
        RUNFLOW_API_KEY=env.get("RUNFLOW_API_KEY", "rf_live_local-emulator-key"),
        EDITQ_RUNFLOW_CALLBACK_SECRET=env.get("EDITQ_RUNFLOW_CALLBACK_SECRET")
        or f"whsec_{secrets.token_urlsafe(24)}",
        EDITQ_WEBHOOK_SECRET=env.get("EDITQ_WEBHOOK_SECRET") or secrets.token_urlsafe(32),
        # Producer callbacks are signed with it; every process needs the same one.
        EDITQ_CALLBACK_SECRET=env.get("EDITQ_CALLBACK_SECRET") or new_secret(),
        EDITQ_ALLOW_PRIVATE_URLS="1",
        EDITQ_WORKER_METRICS_PORT=str(ports.worker_metrics),
        EDITQ_SCHEDULER_METRICS_PORT=str(ports.scheduler_metrics),
    )
    env.pop("EDITQ_PUBLIC_URL", None)
    if webhooks:
        env["EDITQ_PUBLIC_URL"] = f"http://127.0.0.1:{ports.api}"
    return env


EMULATED = ("fal", "runware", "runflow")


def start_all(stack: Processes, ports: Ports, emulator_args: Sequence[str] = ()) -> None:
    """Start the three provider emulators, the API, a worker and the scheduler.

    ``emulator_args`` go to every ``editq emulate`` (``--result-ttl 60``, say).
    """
    for provider in EMULATED:
        port = getattr(ports, provider)
        stack.start(
            f"{provider}-emulator",
            ["emulate", provider, "--port", str(port), *emulator_args],
            f"http://127.0.0.1:{port}/_emulator/stats",
        )
    api = f"http://127.0.0.1:{ports.api}/readyz"
    stack.start("api", ["api", "--port", str(ports.api)], api)
    stack.start("worker", ["worker"])
    stack.start("scheduler", ["scheduler"])


def prepare(home: Path) -> dict[str, str]:
    """Start the embedded services (if needed), migrate, and return their environment."""
    env = services.up(home).values
    upgrade(env["EDITQ_DATABASE_URL"])
    return dict(env)


def run_dev(home: Path, *, ports: Ports, console: Console) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops editq's processes."""
    env = local_env(prepare(home), ports, webhooks=True)
    # The log files are read by a person here: readable lines, unless asked otherwise.
    env.setdefault("EDITQ_LOG_FORMAT", os.environ.get("EDITQ_LOG_FORMAT", "console"))
    api_url = env["EDITQ_PUBLIC_URL"]
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Processes(env, home / "logs") as stack:
        start_all(stack, ports)
        emulators = f"fal :{ports.fal}, runware :{ports.runware}, runflow :{ports.runflow}"
        console.print(f"[green]editq is running[/green]: API {api_url}/docs; emulators {emulators}")
        console.print(f"API key: {env['EDITQ_API_KEYS']}   logs: {home / 'logs'}")
        console.print(f"callbacks are signed with {env['EDITQ_CALLBACK_SECRET']}")
        console.print(
            'In another shell: eval "$(editq services env)" to use the CLI. Ctrl-C stops.'
        )
        stop.wait()
    console.print("stopped editq's processes; `editq services down` stops the services")
