"""The services home: one directory holding the embedded servers' data, logs, pids and state.

Layout (``<name>`` is ``postgres``, ``valkey`` or ``seaweedfs``)::

    state.json          ports and secrets chosen by the first ``up``, so ``env`` is stable
    seaweedfs-s3.json   the S3 server's identities (its access key and secret)
    <name>/             the server's data directory (and its working directory)
    logs/<name>.log     the server's output
    run/<name>.pid      the server's pid while it runs
    .lock               held while ``up`` or ``down`` changes anything
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import secrets
import socket
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from worker.values.callback_events import new_secret

LOOPBACK = "127.0.0.1"
_MAX_PORT = 65535
_STATE_VERSION = 1

#: Port name -> (name of a port that must be this one + offset, offset).
PortPairs = Mapping[str, tuple[str, int]]


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
    #: What producer callbacks are signed with (``EDITQ_CALLBACK_SECRET``); a home made
    #: before it was kept gets one at its next ``up``.
    callback_secret: str | None = None

    @classmethod
    def generate(cls, port_names: Iterable[str], pairs: PortPairs) -> State:
        """New random secrets and free ports (see ``choose_ports``)."""
        key_alphabet = string.ascii_uppercase + string.digits
        return cls(
            ports=choose_ports(port_names, pairs),
            postgres_password=secrets.token_hex(16),
            s3_access_key="EDITQ" + "".join(secrets.choice(key_alphabet) for _ in range(15)),
            s3_secret_key=secrets.token_urlsafe(30),
            api_key="editq-dev-" + secrets.token_urlsafe(24),
            callback_secret=new_secret(),
        )

    def with_ports_for(self, port_names: Iterable[str], pairs: PortPairs) -> State:
        """This state, with free ports added for any names it does not have yet, and the
        secrets a home made by an older editq did not keep."""
        state = self
        missing = [name for name in port_names if name not in self.ports]
        if missing:
            state = replace(state, ports={**self.ports, **choose_ports(missing, pairs)})
        if state.callback_secret is None:
            state = replace(state, callback_secret=new_secret())
        return state

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


def choose_ports(names: Iterable[str], pairs: PortPairs) -> dict[str, int]:
    """A distinct port free on loopback now for each of ``names``.

    ``pairs`` maps a name to (another name, offset) when the other port must be this one's
    plus ``offset``; a pair applies when both names are chosen together.
    """
    wanted = list(names)
    tied = {other for name, (other, _) in pairs.items() if name in wanted}
    chosen: dict[str, int] = {}
    # Every socket stays bound until all ports are chosen, so the ports are distinct.
    with contextlib.ExitStack() as held:
        for name in wanted:
            if name in tied:
                continue
            if name in pairs:
                other, offset = pairs[name]
                chosen[name], chosen[other] = _hold_pair(held, offset)
            else:
                chosen[name] = _hold(held)
    return chosen


#: Where free ports are looked for: below Linux's ephemeral range (32768-60999), from which
#: the kernel gives outgoing connections their ports. A port chosen there could be taken by
#: one in the moment between its choice and its server's bind; below it, none can.
_LISTEN_PORTS = range(20000, 32768)


def _hold(held: contextlib.ExitStack, port: int = 0) -> int:
    """Bind ``port`` (0: any free one, see :data:`_LISTEN_PORTS`) on loopback until ``held``
    closes; return it."""
    if port:
        return _bind(held, port)
    draw = random.SystemRandom()
    for _ in range(200):
        with contextlib.suppress(OSError):  # taken: draw another
            return _bind(held, draw.choice(_LISTEN_PORTS))
    return _bind(held, 0)


def _bind(held: contextlib.ExitStack, port: int) -> int:
    sock = socket.socket()
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    held.enter_context(sock)
    return int(sock.getsockname()[1])


def _hold_pair(held: contextlib.ExitStack, offset: int) -> tuple[int, int]:
    """Two free ports ``offset`` apart, held until ``held`` closes."""
    for _ in range(100):
        port = _hold(held)
        if port + offset <= _MAX_PORT:
            with contextlib.suppress(OSError):  # taken: try another base port
                return port, _hold(held, port + offset)
    raise OSError(f"found no two free loopback ports {offset} apart")


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
