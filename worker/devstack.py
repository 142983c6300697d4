"""``editq dev``: the embedded services plus every editq process, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from rich.console import Console

from worker import services
from worker.migrate import upgrade
from worker.stack import Ports, Stack, local_env, start_all


def prepare(home: Path) -> dict[str, str]:
    """Start the embedded services (if needed), migrate, and return their environment."""
    env = services.up(home).values
    upgrade(env["EDITQ_DATABASE_URL"])
    return dict(env)


def run_dev(home: Path, *, ports: Ports, console: Console) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops editq's processes."""
    env = local_env(prepare(home), ports, webhooks=True)
    api_url = env["EDITQ_PUBLIC_URL"]
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Stack(env, home / "logs") as stack:
        start_all(stack, ports)
        emulators = f"fal :{ports.fal}, runware :{ports.runware}, runflow :{ports.runflow}"
        console.print(f"[green]editq is running[/green]: API {api_url}/docs; emulators {emulators}")
        console.print(f"API key: {env['EDITQ_API_KEYS']}   logs: {home / 'logs'}")
        console.print(f"callbacks are signed with {env['EDITQ_CALLBACK_SECRET']}")
        console.print(
            'In another shell: eval "$(editq services env)" to use the CLI. Ctrl-C stops.'
        )
        stop.wait()
    console.print("stopped editq's processes; `editq services down` stops the services")
