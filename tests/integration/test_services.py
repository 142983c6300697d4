"""``editq services``: real PostgreSQL, Valkey and S3 started, found again, and stopped."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import redis
from botocore.config import Config
from sqlalchemy import create_engine, text

from tests.waiting import wait_until
from worker import errors
from worker.config import check_callback_secret
from worker.dev import services
from worker.dev.services.home import Home

pytestmark = pytest.mark.integration

NAMES = ["postgres", "valkey", "seaweedfs"]
KEYS = [
    "EDITQ_DATABASE_URL",
    "EDITQ_BROKER_URL",
    "EDITQ_S3_ENDPOINT_URL",
    "EDITQ_S3_BUCKET",
    "EDITQ_S3_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "EDITQ_API_KEYS",
    "EDITQ_ENV",
    # The secret `editq dev` signs callbacks with: a second shell may name a callback_url.
    "EDITQ_CALLBACK_SECRET",
]


def deep_home(base: Path) -> Path:
    """A home whose path is longer than a Unix socket path may be (about 107 bytes)."""
    home = base / ("deep-" + "x" * 100) / "home"
    assert len(str(home)) > 110
    return home


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A home brought up by another Python process, which has exited; and what it printed."""
    home = deep_home(tmp_path_factory.mktemp("services"))
    code = "import json, sys, pathlib; from worker.dev import services\n"
    code += "print(json.dumps(services.up(pathlib.Path(sys.argv[1])).values))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(home)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        yield home, json.loads(done.stdout)
    finally:
        services.down(home)


def pids(home: Path) -> dict[str, int]:
    """Service name -> the pid in its pid file."""
    where = Home.at(home)
    return {name: int(where.pidfile(name).read_text()) for name in NAMES}


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (an unreaped zombie counts: it holds nothing open)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def s3_client(values: dict[str, str]):  # type: ignore[no-untyped-def]  # boto3 clients are untyped
    """A boto3 client for the embedded S3 server, as editq configures one."""
    return boto3.client(
        "s3",
        endpoint_url=values["EDITQ_S3_ENDPOINT_URL"],
        region_name=values["EDITQ_S3_REGION"],
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def test_services_outlive_the_process_that_started_them(
    started: tuple[Path, dict[str, str]],
) -> None:
    home, printed = started
    assert services.status(home) == dict.fromkeys(NAMES, True)
    assert services.env(home).values == printed
    assert list(printed) == KEYS
    assert printed["EDITQ_S3_BUCKET"] == "editq"
    assert printed["EDITQ_ENV"] == "development"
    assert printed["EDITQ_BROKER_URL"].startswith("redis://127.0.0.1:")
    check_callback_secret(printed["EDITQ_CALLBACK_SECRET"])


def test_database_url_reaches_the_editq_database(started: tuple[Path, dict[str, str]]) -> None:
    engine = create_engine(started[1]["EDITQ_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert conn.execute(text("SELECT current_database()")).scalar_one() == "editq"
    finally:
        engine.dispose()


def test_broker_url_answers_ping(started: tuple[Path, dict[str, str]]) -> None:
    client = redis.Redis.from_url(started[1]["EDITQ_BROKER_URL"])
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_s3_stores_objects_and_checks_presigned_signatures(
    started: tuple[Path, dict[str, str]],
) -> None:
    client = s3_client(started[1])
    client.put_object(Bucket="editq", Key="hello.txt", Body=b"hello")
    assert client.get_object(Bucket="editq", Key="hello.txt")["Body"].read() == b"hello"

    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "editq", "Key": "hello.txt"}, ExpiresIn=60
    )
    assert httpx.get(url).content == b"hello"
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403


def test_up_again_leaves_running_services_alone(started: tuple[Path, dict[str, str]]) -> None:
    home, printed = started
    before = pids(home)
    assert services.up(home).values == printed
    assert pids(home) == before


def test_up_restarts_a_stopped_service_on_the_same_port(
    started: tuple[Path, dict[str, str]],
) -> None:
    home, printed = started
    before = pids(home)
    os.kill(before["valkey"], signal.SIGTERM)
    wait_until(lambda: gone(before["valkey"]), timeout=10, what="valkey to exit")
    assert services.status(home)["valkey"] is False
    with pytest.raises(errors.ServicesNotRunning):
        services.env(home)

    assert services.up(home).values == printed
    after = pids(home)
    assert after["valkey"] != before["valkey"]
    assert after["postgres"] == before["postgres"]
    assert after["seaweedfs"] == before["seaweedfs"]


def test_down_stops_every_server_and_a_taken_port_stops_up(tmp_path: Path) -> None:
    home = deep_home(tmp_path)
    try:
        values = services.up(home).values
        running = pids(home)
        assert services.down(home) == NAMES
        for name, pid in running.items():
            wait_until(functools.partial(gone, pid), timeout=10, what=f"{name} (pid {pid}) to exit")
        assert services.status(home) == dict.fromkeys(NAMES, False)
        with pytest.raises(errors.ServicesNotRunning) as raised:
            services.env(home)
        assert raised.value.code == "services_not_running"
        assert services.down(home) == []

        broker_port = int(values["EDITQ_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", broker_port))
            squatter.listen()
            with pytest.raises(errors.PortTaken, match=f"valkey needs 127.0.0.1:{broker_port}"):
                services.up(home)
        assert services.status(home) == dict.fromkeys(NAMES, False)
    finally:
        services.down(home)
