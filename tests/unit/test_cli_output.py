"""What the ``editq`` commands print: whole ids in narrow tables, choices, file names."""

from __future__ import annotations

import io
import json
import uuid
from typing import get_args

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from worker.cli.main import app
from worker.cli.output import OutputFormat, Provider, output_names, print_json, print_table, whole
from worker.config import KNOWN_PROVIDERS
from worker.values.canonical import AspectRatio, EditInput


def rendered(table: Table, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_table(table, console)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def jobs_table(ids: list[str]) -> Table:
    table = Table(whole("id"), "state", "provider", "error", whole("key"), "created")
    for i in ids:
        table.add_row(
            i, "succeeded", "runware", "provider_unavailable", f"outputs/{i}/0.jpeg", "2025-01-01"
        )
    return table


def test_a_narrow_console_still_prints_every_id_and_key_whole() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    text = rendered(jobs_table(ids), width=60)
    for i in ids:
        assert i in text
        assert f"outputs/{i}/0.jpeg" in text


def test_a_wide_enough_console_keeps_its_width() -> None:
    text = rendered(jobs_table([str(uuid.uuid4())]), width=300)
    assert max(len(line) for line in text.splitlines()) < 200


def test_free_text_columns_still_wrap_in_a_narrow_console() -> None:
    job_id = str(uuid.uuid4())
    table = Table(whole("id"), "reason")
    table.add_row(job_id, "the provider was down for most of the morning " * 4)
    text = rendered(table, width=80)
    assert job_id in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_json_is_one_document_with_iso_timestamps(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    from worker.usecases.provider_status import ProviderStatus

    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    print_json([ProviderStatus("fal", "open", 3, at, 1, 8, None, 6, False, 2.5)])
    assert json.loads(capsys.readouterr().out) == [
        {
            "name": "fal",
            "breaker": "open",
            "consecutive_failures": 3,
            "opened_at": "2025-01-02T03:04:05Z",
            "in_flight": 1,
            "capacity": 8,
            "submit_rate": None,
            "limit": 6,
            "slow_start": False,
            "latency_seconds": 2.5,
            "capacity_overridden": False,
            "paused_at": None,
            "paused_by": None,
            "paused_reason": None,
        }
    ]


def test_the_choices_are_the_names_editq_already_has() -> None:
    assert [p.value for p in Provider] == list(KNOWN_PROVIDERS)
    output_formats = get_args(EditInput.model_fields["output_format"].annotation)
    assert tuple(f.value for f in OutputFormat) == output_formats


def test_help_offers_every_choice_and_a_bad_one_exits_2_naming_them() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["submit", "--help"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0
    for choice in (*get_args(AspectRatio), "flux-kontext-max", "png", *KNOWN_PROVIDERS):
        assert choice in shown.output
    refused = runner.invoke(
        app, ["submit", "a.jpg", "make it pop", "--provider", "replicate"], env={"COLUMNS": "300"}
    )
    assert refused.exit_code == 2
    assert "--provider" in refused.output
    assert all(p in refused.output for p in KNOWN_PROVIDERS)


def test_a_bad_metadata_item_exits_2_naming_the_option() -> None:
    refused = CliRunner().invoke(
        app, ["submit", "a.jpg", "make it pop", "--metadata", "sku"], env={"COLUMNS": "300"}
    )
    assert refused.exit_code == 2
    assert "--metadata" in refused.output and "'sku'" in refused.output


def test_a_single_output_is_named_by_external_id_else_by_job_id() -> None:
    job_id = str(uuid.uuid4())
    one = [{"key": f"outputs/{job_id}/0.png"}]
    two = [{"key": f"outputs/{job_id}/0.jpeg"}, {"key": f"outputs/{job_id}/1.jpeg"}]
    assert output_names({"job_id": job_id, "external_id": "SKU-1", "outputs": one}) == [
        ("SKU-1.png", one[0]["key"])
    ]
    assert output_names({"job_id": job_id, "external_id": None, "outputs": two}) == [
        (f"{job_id}-0.jpeg", two[0]["key"]),
        (f"{job_id}-1.jpeg", two[1]["key"]),
    ]
    assert output_names({"job_id": job_id, "external_id": None, "outputs": []}) == []
