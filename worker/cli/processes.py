"""Commands that run a process: ``api``, ``worker``, ``scheduler``, ``emulate``, ``dev``, ``demo``,
and ``providers``, which shows what the running processes share about each provider.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from worker.cli.common import DEFAULT_HOME, HomeOption, build_container, err, setup_logging
from worker.config import load_settings

app = typer.Typer()


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API (producer endpoints, webhooks, health, metrics)."""
    import uvicorn

    from worker.api.app import create_app
    from worker.wiring import build

    fmt = setup_logging()
    from worker.logs import uvicorn_log_config

    uvicorn.run(
        create_app(build(load_settings())),
        host=host,
        port=port,
        log_level="info",
        log_config=uvicorn_log_config(fmt),
    )


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(help="Tasks run at once (threads, or processes with --pool prefork).")
    ] = 16,
    pool: Annotated[
        str, typer.Option(help="threads (default: every task is short I/O) or prefork.")
    ] = "threads",
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run a Celery worker for editq's tasks.

    Every task is one short HTTP call or transaction, so the worker mostly waits on the
    network: threads overlap those waits in one process, at a fraction of the memory of
    one process per task slot.
    """
    if pool not in {"threads", "prefork"}:
        err.print(f"[red]invalid pool[/red]: {pool!r}; choose threads or prefork")
        raise typer.Exit(2)
    from worker import metrics
    from worker.celery_app import app as celery
    from worker.celery_app import configure

    setup_logging(loglevel)
    settings = load_settings()
    configure(celery, settings)
    metrics.serve(settings.worker_metrics_port, "worker")
    celery.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--queues={settings.queue}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


@app.command()
def scheduler(
    heartbeat_file: Annotated[
        Path | None,
        typer.Option(help="Touch this file after every tick, for `editq healthcheck scheduler`."),
    ] = None,
) -> None:
    """Run the periodic tick: dispatch, poll due jobs, repair expired leases, finish batches.

    Run as many as you like, on any hosts: one leads (it ticks), the others stand by and
    take over within EDITQ_SCHEDULER_LEASE_SECONDS when it dies.
    """
    from worker import metrics
    from worker.pipeline import scheduler as loop
    from worker.pipeline.leadership import Leadership

    setup_logging()
    container = build_container()
    metrics.serve(container.settings.scheduler_metrics_port, "scheduler")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings = container.settings
    wakeups = container.wakeups()
    lease = settings.scheduler_lease_seconds
    loop.run(
        container.pipeline("scheduler"),
        container.batches("scheduler"),
        settings.tick_seconds,
        stop,
        wakeups,
        on_tick=heartbeat_file.touch if heartbeat_file else None,
        prune=loop.Pruning(
            container.retention("scheduler"), settings.prune_interval_seconds, budget=lease / 2
        ),
        leadership=Leadership(container.database("scheduler"), lease, wakeups.mode),
    )
    wakeups.close()
    container.close()


@app.command()
def emulate(
    provider: Annotated[str, typer.Argument(help="Which provider: fal, runware or runflow.")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8100,
    latency: Annotated[float, typer.Option(help="Mean seconds a request runs.")] = 1.0,
    jitter: Annotated[float, typer.Option(help="Latency varies by up to this many seconds.")] = 0.3,
    concurrency: Annotated[
        int, typer.Option(help="Requests run at once (0: no limit); the rest wait in the queue.")
    ] = 100,
    rate_5xx: Annotated[float, typer.Option(help="Share of submits answered 503.")] = 0.0,
    rate_429: Annotated[float, typer.Option(help="Share of submits answered 429.")] = 0.0,
    rate_422: Annotated[float, typer.Option(help="Share of submits answered 422.")] = 0.0,
    rate_moderated: Annotated[float, typer.Option(help="Share of results moderated.")] = 0.0,
    rate_blackout: Annotated[
        float, typer.Option(help="Share of results black and flagged unsafe.")
    ] = 0.0,
    rate_flagged: Annotated[float, typer.Option(help="Share of results flagged unsafe.")] = 0.0,
    rate_unchanged: Annotated[
        float, typer.Option(help="Share of results that hand the source back.")
    ] = 0.0,
    rate_wrong_size: Annotated[float, typer.Option(help="Share of results made square.")] = 0.0,
    account_limit: Annotated[
        int | None,
        typer.Option(help="Requests one account may hold; beyond it, 429 (a hidden limit)."),
    ] = None,
    result_ttl: Annotated[float, typer.Option(help="Seconds output URLs stay valid.")] = 3600.0,
    seed: Annotated[int | None, typer.Option(help="Seed for the fault and latency draws.")] = None,
    rewrite_host: Annotated[
        list[str] | None,
        typer.Option(
            help="FROM=TO (host:port each): connect to TO for URLs naming FROM, keeping the "
            "Host header (an emulator in a container, handed URLs made for the host)."
        ),
    ] = None,
    callback_secret: Annotated[
        str | None,
        typer.Option(
            envvar="EDITQ_RUNFLOW_CALLBACK_SECRET",
            help="runflow: the whsec_ secret callbacks are signed with.",
        ),
    ] = None,
) -> None:
    """Run a local server that speaks a provider's wire protocol and really edits images."""
    from emulators.registry import EMULATORS, serve

    if provider not in EMULATORS:
        err.print(f"[red]invalid provider[/red]: {provider!r}; choose {', '.join(EMULATORS)}")
        raise typer.Exit(2)
    setup_logging()
    options: dict[str, object] = {
        "latency": latency,
        "jitter": jitter,
        "concurrency": concurrency or None,
        "rate_5xx": rate_5xx,
        "rate_429": rate_429,
        "rate_422": rate_422,
        "rate_moderated": rate_moderated,
        "rate_blackout": rate_blackout,
        "rate_flagged": rate_flagged,
        "rate_unchanged": rate_unchanged,
        "rate_wrong_size": rate_wrong_size,
        "account_limit": account_limit,
        "result_ttl": result_ttl,
        "seed": seed,
        "rewrite_hosts": host_pairs(rewrite_host or []),
    }
    if provider == "runflow" and callback_secret:
        options["callback_secret"] = callback_secret
    serve(provider, host, port, options)


@app.command()
def dev(
    home: HomeOption = DEFAULT_HOME,
    api_port: Annotated[int, typer.Option()] = 8000,
    fal_port: Annotated[int, typer.Option()] = 8100,
    runware_port: Annotated[int, typer.Option()] = 8101,
    runflow_port: Annotated[int, typer.Option()] = 8102,
    worker_metrics_port: Annotated[int, typer.Option()] = 9101,
    scheduler_metrics_port: Annotated[int, typer.Option()] = 9102,
) -> None:
    """Run everything at once on the embedded services: emulators, api, worker, scheduler."""
    from worker.dev.processes import Ports, run_dev

    ports = Ports(
        api_port,
        fal_port,
        runware_port,
        runflow_port,
        worker_metrics_port,
        scheduler_metrics_port,
    )
    run_dev(home, ports=ports, console=err)


@app.command()
def demo(
    home: HomeOption = DEFAULT_HOME,
    count: Annotated[int, typer.Option(help="How many sample product photos.")] = 12,
    out: Annotated[Path, typer.Option(help="Where the edited images are saved.")] = Path(
        "demo-output"
    ),
) -> None:
    """Edit a sample catalog end to end on the embedded services, then stop what it started."""
    from worker.dev.demo import run_demo

    ok = run_demo(home, count=count, out=out, console=Console())
    raise typer.Exit(0 if ok else 1)


def host_pairs(items: list[str]) -> dict[str, str]:
    """``FROM=TO`` options as a mapping; exit 2 naming a malformed one."""
    pairs: dict[str, str] = {}
    for item in items:
        source, _, target = item.partition("=")
        if not all(part.rpartition(":")[2].isdigit() for part in (source, target)):
            err.print(f"[red]invalid --rewrite-host[/red]: {item!r}; use host:port=host:port")
            raise typer.Exit(2)
        pairs[source] = target
    return pairs
