"""Fixtures shared by every test folder that needs real services.

Real PostgreSQL, Valkey and S3 come from the embedded services (started once per run in
a temporary home and stopped at the end) unless ``EDITQ_DATABASE_URL``,
``EDITQ_BROKER_URL`` and ``EDITQ_S3_ENDPOINT_URL`` are all set, in which case those servers
are used. Either way each run gets its own database, queue name and bucket.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

OVERRIDES = ("EDITQ_DATABASE_URL", "EDITQ_BROKER_URL", "EDITQ_S3_ENDPOINT_URL")


def external_services() -> bool:
    """Whether the environment names servers of its own for the tests to use."""
    return all(os.environ.get(name) for name in OVERRIDES)


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """Home of the embedded services this run started (None when using external servers)."""
    if external_services():
        yield None
        return
    from worker.dev import services

    home = Path(tmp_path_factory.mktemp("editq-home"))
    try:
        services.up(home)
        yield home
    finally:
        services.down(home)


@pytest.fixture(scope="session")
def service_env(embedded_home: Path | None) -> dict[str, str]:
    """Environment of running PostgreSQL, Valkey and S3 servers."""
    if embedded_home is None:
        keys = (*OVERRIDES, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "EDITQ_S3_REGION")
        return {k: os.environ[k] for k in keys if k in os.environ}
    from worker.dev import services

    return dict(services.env(embedded_home).values)


@pytest.fixture(scope="session")
def test_env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``service_env`` with this run's own database, queue and bucket, migrated."""
    from worker.migrate import upgrade

    run = uuid.uuid4().hex[:10]
    server_url = make_url(service_env["EDITQ_DATABASE_URL"])
    # No pool: the fault suite restarts the server, and a kept connection would be dead.
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    database = f"editq_test_{run}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    env = dict(service_env)
    env["EDITQ_DATABASE_URL"] = server_url.set(database=database).render_as_string(
        hide_password=False
    )
    env["EDITQ_QUEUE"] = f"editq-test-{run}"
    env["EDITQ_S3_BUCKET"] = f"editq-test-{run}"
    env.setdefault("EDITQ_S3_REGION", "us-east-1")
    upgrade(env["EDITQ_DATABASE_URL"])
    s3(env).create_bucket(Bucket=env["EDITQ_S3_BUCKET"])
    try:
        yield env
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def s3(env: dict[str, str]):  # type: ignore[no-untyped-def]  # boto3 clients are untyped
    """A boto3 S3 client for ``env``."""
    return boto3.client(
        "s3",
        endpoint_url=env["EDITQ_S3_ENDPOINT_URL"],
        region_name=env.get("EDITQ_S3_REGION", "us-east-1"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
