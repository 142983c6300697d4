"""The services home: one directory holding the embedded servers' data, logs, pids and state.

Layout (``<name>`` is ``postgres``, ``valkey`` or ``seaweedfs``)::

    state.json      ports and secrets chosen by the first ``up``, kept so ``env`` is stable
    <name>/         the server's data directory (and its working directory)
    logs/<name>.log the server's output
    run/<name>.pid  the server's pid while it runs
    .lock           held while ``up`` or ``down`` changes anything
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import string
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

LOOPBACK = "127.0.0.1"
_STATE_VERSION = 1


@dataclass(frozen=True)
class State:
    """What a home's first ``up`` chose, so that every later command agrees on it."""

    #: Port name (``postgres``, ``valkey``, ``s3``, ``master_grpc``, ...) -> port on loopback.
    ports: dict[str, int]
    postgres_password: str
    s3_access_key: str
    s3_secret_key: str
    #: The producer API key for development (``EDITQ_API_KEYS``).
    api_key: str

    @classmethod
    def generate(cls, port_names: Iterable[str]) -> State:
        """New random secrets and a free port for each name."""
        names = list(port_names)
        key_alphabet = string.ascii_uppercase + string.digits
        return cls(
            ports=dict(zip(names, free_ports(len(names)), strict=True)),
            postgres_password=secrets.token_hex(16),
            s3_access_key="EDITQ" + "".join(secrets.choice(key_alphabet) for _ in range(15)),
            s3_secret_key=secrets.token_urlsafe(30),
            api_key="editq-dev-" + secrets.token_urlsafe(24),
        )

    def with_ports_for(self, port_names: Iterable[str]) -> State:
        """This state, with a free port added for any name it does not have yet."""
        missing = [name for name in port_names if name not in self.ports]
        if not missing:
            return self
        added = dict(zip(missing, free_ports(len(missing)), strict=True))
        return replace(self, ports={**self.ports, **added})

    def to_json(self) -> str:
        """The state file's text."""
        body = {"version": _STATE_VERSION, **asdict(self)}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> State:
        """Parse the state file's text."""
        body = json.loads(text)
        body.pop("version", None)
        return cls(**body)


@dataclass(frozen=True)
class Home:
    """Paths inside one services home; ``root`` is absolute."""

    root: Path

    @classmethod
    def at(cls, path: Path) -> Home:
        """The home at ``path`` (relative to the current directory, symlinks resolved)."""
        return cls(path.expanduser().resolve())

    @property
    def state_file(self) -> Path:
        """Ports and secrets, readable only by the owner."""
        return self.root / "state.json"

    def data(self, service: str) -> Path:
        """The data (and working) directory of ``service``."""
        return self.root / service

    def log(self, service: str) -> Path:
        """Where ``service`` writes its output."""
        return self.root / "logs" / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        """Holds the pid of ``service`` while it runs."""
        return self.root / "run" / f"{service}.pid"

    def load_state(self) -> State | None:
        """The saved state, or None before the first ``up``."""
        try:
            return State.from_json(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def save_state(self, state: State) -> None:
        """Write the state file atomically, readable only by the owner."""
        write_private(self.state_file, state.to_json())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's lock, so two ``up``/``down`` never interleave."""
        for folder in (self.root, self.root / "logs", self.root / "run"):
            folder.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, with mode 0600 (it holds secrets)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback right now."""
    # All sockets stay bound until every port is read, so the ports are distinct.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on loopback now."""
    with socket.socket() as sock:
        # Servers set SO_REUSEADDR, so a port held only by TIME_WAIT connections is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
