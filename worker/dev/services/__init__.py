"""Embedded PostgreSQL, Valkey and S3 for development: ``editq services up|down|env``.

Real servers from the ``editq[embedded]`` wheels run under a home directory (``.editq/``
by default), detached from the process that started them: they keep running after it
exits, until ``down`` stops them by pid. The first ``up`` chooses free loopback ports and
random secrets and keeps them in the home's state file, so ``env`` prints the same
environment every time, and two homes can run side by side. See ``home.py`` for the layout.

Nothing here starts anything or reads settings when imported; the embedded packages are
imported only when a server is prepared or started.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from worker.dev.services.base import Service
from worker.dev.services.home import LOOPBACK, Home, State
from worker.dev.services.postgres import Postgres
from worker.dev.services.process import stop
from worker.dev.services.seaweedfs import BUCKET, REGION, SeaweedFS
from worker.dev.services.valkey import Valkey
from worker.errors import PortTaken, ServicesNotRunning

__all__ = [
    "ServiceEnv",
    "down",
    "env",
    "status",
    "up",
]

_log = logging.getLogger(__name__)

#: How long ``up`` waits for every server to answer (a fresh start takes about a second).
READY_TIMEOUT_SECONDS = 60.0

#: Every server, in the order ``status`` and ``down`` report them.
_SERVICES: tuple[type[Service], ...] = (Postgres, Valkey, SeaweedFS)
# weed mini takes the longest to boot: started first, the others boot while it does.
_START_ORDER: tuple[type[Service], ...] = (SeaweedFS, Valkey, Postgres)


@dataclass(frozen=True)
class ServiceEnv:
    """The environment that points every editq command at a home's running services."""

    #: Variable name -> value, in a stable order.
    values: dict[str, str]

    def shell(self, *, export: bool = True) -> str:
        """One ``KEY=VALUE`` line a variable, quoted for ``eval "$(editq services env)"``.

        Each line starts with ``export`` unless ``export`` is False (for a ``.env`` file):
        without it, ``eval`` would set shell variables that the commands run next never see.
        """
        prefix = "export " if export else ""
        return "\n".join(
            f"{prefix}{key}={shlex.quote(value)}" for key, value in self.values.items()
        )


def up(home: Path) -> ServiceEnv:
    """Start every server of ``home`` that is not running, wait until all answer.

    Creates the home, its cluster, database ``editq`` and bucket ``editq`` on first use;
    leaves running servers alone, so a second ``up`` returns the same environment.
    Raises ``PortTaken`` before starting anything if a kept port is in use, and
    ``ServiceStartFailed`` if a server does not answer in time (what did start keeps
    running: ``down`` stops it).
    """
    where = Home.at(home)
    with where.locked():
        state = _state_for_up(where)
        services = [kind(where, state) for kind in _SERVICES]
        stopped = [service for service in services if service.pid() is None]
        _check_ports(stopped)
        for service in sorted(stopped, key=lambda service: _START_ORDER.index(type(service))):
            service.start()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for service in services:
            service.wait_ready(deadline)
    return _environment(where, state)


def down(home: Path, only: Collection[str] | None = None) -> list[str]:
    """Stop the servers of ``home`` by pid and wait until they are gone; return their names.

    ``only`` names the servers to stop (``postgres``, ``valkey``, ``seaweedfs``); the
    default is all of them. ``up`` starts a stopped one again with the same ports and data.
    """
    where = Home.at(home)
    state = where.load_state()
    if state is None:
        return []
    with where.locked():
        services = [kind(where, state) for kind in _SERVICES if only is None or kind.name in only]
        running = [(service, pid) for service in services if (pid := service.pid()) is not None]
        killed = stop({pid: service.stopping() for service, pid in running})
        for service, pid in running:
            if pid in killed:
                _log.warning("%s (pid %d) did not stop in time and was killed", service.name, pid)
        for service in services:
            where.pidfile(service.name).unlink(missing_ok=True)
            service.after_stop()
    return [service.name for service, _ in running]


def env(home: Path) -> ServiceEnv:
    """The environment of ``home``'s servers; raises ``ServicesNotRunning`` unless all run."""
    where = Home.at(home)
    state = where.load_state()
    if state is None:
        raise ServicesNotRunning(f"(nothing was ever started in {where.root})")
    stopped = [kind.name for kind in _SERVICES if kind(where, state).pid() is None]
    if stopped:
        raise ServicesNotRunning(f"({', '.join(stopped)} not running, in {where.root})")
    return _environment(where, state)


def status(home: Path) -> dict[str, bool]:
    """Server name -> whether it is running, for ``home``."""
    where = Home.at(home)
    state = where.load_state()
    if state is None:
        return {kind.name: False for kind in _SERVICES}
    return {kind.name: kind(where, state).pid() is not None for kind in _SERVICES}


def _environment(where: Home, state: State) -> ServiceEnv:
    signing = {"EDITQ_CALLBACK_SECRET": state.callback_secret} if state.callback_secret else {}
    return ServiceEnv(
        {
            "EDITQ_DATABASE_URL": Postgres(where, state).url(),
            "EDITQ_BROKER_URL": Valkey(where, state).url(),
            "EDITQ_S3_ENDPOINT_URL": SeaweedFS(where, state).endpoint_url(),
            "EDITQ_S3_BUCKET": BUCKET,
            "EDITQ_S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": state.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": state.s3_secret_key,
            "EDITQ_API_KEYS": state.api_key,
            "EDITQ_ENV": "development",
            # The same secret `editq dev` signs callbacks with, so a job submitted from
            # another shell may name a callback_url.
            **signing,
        }
    )


def _state_for_up(where: Home) -> State:
    """The saved state (with a port for any server added since), or a new one, saved."""
    port_names = [name for kind in _SERVICES for name in kind.port_names]
    pairs = {name: pair for kind in _SERVICES for name, pair in kind.port_pairs.items()}
    saved = where.load_state()
    if saved is None:
        state = State.generate(port_names, pairs)
    else:
        state = saved.with_ports_for(port_names, pairs)
    if state != saved:
        where.save_state(state)
    return state


def _check_ports(services: list[Service]) -> None:
    """Raise ``PortTaken`` if another program holds a port one of ``services`` needs."""
    taken = [
        f"{service.name} needs {LOOPBACK}:{port}"
        for service in services
        for port in service.busy_ports()
    ]
    if taken:
        raise PortTaken(f"({'; '.join(taken)})")
