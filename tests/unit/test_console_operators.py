"""The console's operators: entries parsed strictly, passwords checked only as hashes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from worker.cli.main import app
from worker.console.operators import Operator, Operators, Role, hash_password
from worker.errors import SettingsInvalid

ANA = hash_password("ana-operates-the-queue")
BO = hash_password("bo-only-looks-around")


def test_each_operator_logs_in_with_their_own_password_and_gets_their_role() -> None:
    operators = Operators(f"ana:operate:{ANA};\n bo:read:{BO}\n")

    assert operators.check("ana", "ana-operates-the-queue") == Operator("ana", Role.OPERATE)
    assert operators.check("bo", "bo-only-looks-around") == Operator("bo", Role.READ)
    assert not Operator("bo", Role.READ).may_act and Operator("ana", Role.OPERATE).may_act
    assert operators.check("ana", "bo-only-looks-around") is None
    assert operators.check("cy", "ana-operates-the-queue") is None
    assert operators.get("bo") == Operator("bo", Role.READ) and operators.get("cy") is None


@pytest.mark.parametrize(
    "entries",
    ["ana:admin:" + ANA, "ana:operate:plain-password", ":read:" + ANA, "ana:operate"],
    ids=["unknown role", "not a hash", "no name", "no hash"],
)
def test_a_malformed_entry_is_a_settings_error_naming_the_variable(entries: str) -> None:
    with pytest.raises(SettingsInvalid) as caught:
        Operators(entries)
    assert "EDITQ_CONSOLE_OPERATORS" in caught.value.message


def test_no_operators_means_the_console_is_off() -> None:
    assert not Operators("") and not Operators(" ; ")


def test_hash_password_prints_an_entry_that_logs_in() -> None:
    answer = CliRunner().invoke(
        app, ["console", "hash-password", "cy", "--role", "operate", "--stdin"],
        input="cy-is-on-call-tonight\n",
    )  # fmt: skip
    assert answer.exit_code == 0, answer.output
    entry = answer.output.strip()
    assert entry.startswith("cy:operate:$argon2id$")
    assert Operators(entry).check("cy", "cy-is-on-call-tonight") == Operator("cy", Role.OPERATE)


@pytest.mark.parametrize(
    ("args", "password", "says"),
    [
        (["cy", "--role", "admin"], "cy-is-on-call-tonight", "invalid role"),
        (["c:y"], "cy-is-on-call-tonight", "invalid name"),
        (["cy"], "short", "invalid password"),
    ],
)
def test_hash_password_refuses_bad_input_with_exit_2(
    args: list[str], password: str, says: str
) -> None:
    answer = CliRunner().invoke(
        app, ["console", "hash-password", *args, "--stdin"], input=password + "\n"
    )
    assert answer.exit_code == 2
    assert says in answer.output
