"""``editq console``: what an operator needs to log in to the ops console."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

console_app = typer.Typer(help="The ops console's operators.", no_args_is_help=True)


@console_app.command("hash-password")
def hash_password(
    name: Annotated[str, typer.Argument(help="The operator's name, as they log in.")],
    role: Annotated[
        str, typer.Option(help="read (sees everything) or operate (acts too).")
    ] = "read",
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Print an operator's entry for EDITQ_CONSOLE_OPERATORS: name:role:argon2-hash."""
    from worker.cli.common import err
    from worker.console.operators import Role, hash_password

    if role not in {r.value for r in Role}:
        err.print(f"[red]invalid role[/red]: {role!r}; choose read or operate")
        raise typer.Exit(2)
    if ":" in name or ";" in name or not name.strip():
        err.print("[red]invalid name[/red]: a name is not empty and has no ':' or ';'")
        raise typer.Exit(2)
    if stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        err.print("[red]invalid password[/red]: use at least 12 characters")
        raise typer.Exit(2)
    typer.echo(f"{name}:{role}:{hash_password(password)}")
