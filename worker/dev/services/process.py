"""Starting a server detached from us, recognising it later by pid, and stopping it."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: How often a wait re-checks its condition.
POLL_SECONDS = 0.02
#: How long a SIGKILLed process may take to disappear.
_KILL_WAIT_SECONDS = 5.0

# Run by a throwaway interpreter: start the server in a session of its own, print its pid,
# exit. The server is then not our child but init's, so whoever stops it, it is reaped (no
# zombie in a long-lived caller such as `editq dev`), no Popen object is left behind to
# warn that it is still running, and a Ctrl-C in the terminal that ran `up` never reaches
# it. (A backgrounded `sh -c '... &'` would do the same, but a non-interactive shell starts
# background commands with SIGINT ignored, and PostgreSQL's fast shutdown is SIGINT.)
_LAUNCHER = """\
import subprocess, sys
uid, gid, *argv = sys.argv[1:]
ids = {"user": int(uid), "group": int(gid), "extra_groups": []} if uid else {}
child = subprocess.Popen(
    argv, stdin=subprocess.DEVNULL, stdout=2, stderr=2, start_new_session=True, **ids
)
print(child.pid)
"""

# Servers get a minimal environment: an AWS_* or PG* variable meant for the caller's own
# tools must not change how an embedded server authenticates or where it listens.
_KEPT_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


@dataclass(frozen=True)
class RunAs:
    """A system user (and its group) a server runs as instead of us."""

    uid: int
    gid: int


def server_environment() -> dict[str, str]:
    """The environment every embedded server (and ``initdb``) is started with."""
    return {name: os.environ[name] for name in _KEPT_ENVIRONMENT if name in os.environ}


def launch(argv: Sequence[str], *, cwd: Path, log: Path, run_as: RunAs | None) -> int:
    """Start ``argv`` detached in ``cwd``, output appended to ``log``; return its pid.

    Raises ``subprocess.SubprocessError`` when the program could not be started (the
    reason is in ``log``).
    """
    ids = [str(run_as.uid), str(run_as.gid)] if run_as else ["", ""]
    with log.open("ab") as log_file:
        started = subprocess.run(  # noqa: S603  # our own launcher, arguments never go through a shell
            [sys.executable, "-I", "-c", _LAUNCHER, *ids, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=cwd,
            env=server_environment(),
            check=True,
            timeout=30,
        )
    return int(started.stdout)


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    if not _has_procfs():
        return _pid_exists(pid)
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    # Every thread counts: the main thread of an exiting server can be a zombie while
    # others still hold its sockets open.
    return any(_thread_alive(thread) for thread in threads)


def runs_in(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is alive with ``directory`` as its working directory.

    Every embedded server runs in its own data directory, so this tells our server from
    an unrelated process that reused a stale pid (after a reboot, say).
    """
    if not is_alive(pid):
        return False
    if not _has_procfs():
        return True  # nothing more to check by: trust the pid file
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == directory
    except (FileNotFoundError, PermissionError):
        # Gone meanwhile, or another user's process: ours run as us (or, when we are
        # root, as a user whose processes root can inspect).
        return False


@dataclass(frozen=True)
class Stopping:
    """How one server is stopped: the signal that asks it to, and how long it may take."""

    signum: signal.Signals
    grace: float


def stop(servers: Mapping[int, Stopping]) -> list[int]:
    """Signal each pid, SIGKILL any still alive after its grace, and wait until all are gone.

    Returns the pids that had to be killed.
    """
    started = time.monotonic()
    for pid, how in servers.items():
        _signal(pid, how.signum)
    killed: list[int] = []
    give_up = max((how.grace for how in servers.values()), default=0.0) + _KILL_WAIT_SECONDS
    while alive := [pid for pid in servers if is_alive(pid)]:
        elapsed = time.monotonic() - started
        for pid in alive:
            if pid not in killed and elapsed > servers[pid].grace:
                _signal(pid, signal.SIGKILL)
                killed.append(pid)
        if elapsed > give_up:
            break  # unkillable (stuck in the kernel): nothing more we can do
        time.sleep(POLL_SECONDS)
    return killed


def log_tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of ``log`` (empty if there is none)."""
    try:
        with log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: that is what we wanted
        os.kill(pid, signum)


def _thread_alive(thread: Path) -> bool:
    try:
        stat = (thread / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        # Gone between listing its threads and reading this one (ESRCH mid-read).
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@functools.cache
def _has_procfs() -> bool:
    return Path("/proc/self/stat").exists()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
