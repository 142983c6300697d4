"""``million_jobs``: editq's hot paths with a million finished jobs in the database.

Two fresh stacks, started one after the other in the same run: an empty database, and
one that holds ``history_jobs`` finished jobs with their attempts, outputs, events and
callbacks, bulk-loaded in SQL (:mod:`bench.history`) over sixty days. Both get the same
working set, and then the same operations are timed on each, many times, the two stacks
taking turns call by call, so that both meet the same machine (a shared VM's speed drifts
from one minute to the next by more than the effect measured). Each operation's figures
are its median and 90th percentile:

- ``dispatch_round``: one :meth:`Pipeline.dispatch`, the scheduler's round: its one
  transaction (the advisory lock, jobs in flight, provider health, who waits, budgets,
  latencies, the due jobs in fair order and the claim of 150 of them, three providers of
  50 free slots), with a task queue that drops the submit messages, since publishing
  costs the same on either database. Between rounds, untimed, the round's jobs finish, so
  each round finds its slots free and takes the next 150 of a 12,000-row running batch,
  once autovacuum has analyzed the table since the batch came;
- ``create_job``: ``POST /v1/jobs`` over HTTP, one job with metadata and an external id;
- ``list_jobs``: ``GET /v1/jobs`` with a filter, a page of 50 and then two more pages by
  ``next_cursor``, each request timed on its own; the filters are a state and a provider
  (the newest failures on fal) and a batch with a state (a producer reading its results);
- ``batch_status``: ``GET /v1/batches/{id}`` of a finished batch of 4,000 jobs;
- ``get_job``: ``GET /v1/jobs/{id}`` of one of its jobs.

The working set is what the operations read: a finished batch of 4,000 jobs uploaded 30
days ago, loaded by the same code as the history (in the loaded database it lies among
the history's own batches), the jobs the creates make, and the 12,000-row batch the
dispatch rounds take from. The loaded side also reports its bytes per finished job, reads a
sample of every kind of loaded job back through the API, and prunes the oldest tenth of
the history with editq's own retention, timed.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

from bench import history
from bench.harness import Running, stack
from worker.config import load_settings
from worker.pipeline.steps import Pipeline
from worker.usecases.retention import Retention
from worker.wiring import Container, build

Figures = dict[str, Any]

#: Three providers of 50 slots each, learning off, so every round has 150 to fill.
SETTINGS = {
    "EDITQ_PROVIDERS": "fal,runware,runflow",
    "EDITQ_FAL_MAX_IN_FLIGHT": "50",
    "EDITQ_RUNWARE_MAX_IN_FLIGHT": "50",
    "EDITQ_RUNFLOW_MAX_IN_FLIGHT": "50",
    "EDITQ_CAPACITY_LEARNING": "false",
}
SLOTS = 150
#: The history spans this many days; the oldest ``PRUNE_SHARE`` of it is pruned.
HISTORY_DAYS = 60.0
PRUNE_SHARE = 0.1
#: The finished batch whose status is read and whose jobs a filter pages through.
WORKING_ROWS = 4000
WORKING_AGE = timedelta(days=30)
ROUNDS = 40
#: The running batch the rounds take from: more than 1 % of the loaded table (see
#: :func:`_wait_for_autoanalyze`), and more than every round takes.
QUEUED_ROWS = 12_000
AUTOANALYZE_TIMEOUT = 240.0
CREATES = 200
WALKS = 20
PAGES = 3
PAGE_SIZE = 50
READS = 60
#: Calls made on each side before the timing starts: connections, caches, plans.
WARM = 5
#: ``GET /v1/jobs`` filters (``batch_id`` is the working batch's).
FILTERS: dict[str, dict[str, str]] = {
    "failed_on_fal": {"state": "failed", "provider": "fal"},
    "batch_succeeded": {"state": "succeeded", "batch_id": ""},
}
#: The operations timed on both sides; ``loaded_over_empty`` compares their medians.
OPERATIONS = (
    "dispatch_round",
    "create_job",
    *(f"list_jobs.{name}" for name in FILTERS),
    "batch_status",
    "get_job",
)


@dataclass
class _Side:
    """One stack being measured: its API, its database, and editq built on its settings."""

    running: Running
    engine: Engine
    container: Container
    pipeline: Pipeline
    source: str
    figures: Figures
    #: Seconds each timed call took, by operation.
    taken: dict[str, list[float]] = field(default_factory=dict)
    created: int = 0
    claimed: list[int] = field(default_factory=list)
    #: Jobs each ``list_jobs`` walk returned, by filter.
    rows: dict[str, int] = field(default_factory=dict)


def million_jobs(home: Path, history_jobs: int) -> Figures:
    """The operations on an empty database and on one with ``history_jobs`` finished."""
    now = datetime.now(UTC)
    working = history.Layout.one_batch("working", WORKING_ROWS, now - WORKING_AGE)
    past = history.Layout.history(history_jobs, HISTORY_DAYS, now)
    with ExitStack() as stacks:
        # One after the other: the empty stack is up and loaded before the other starts.
        empty = stacks.enter_context(_opened(home / "empty", [working]))
        loaded = stacks.enter_context(_opened(home / "loaded", [past, working]))
        sides = {"empty": empty, "loaded": loaded}
        loaded.figures["size"] = _sizes(loaded.engine)
        _measure(sides, working)
        loaded.figures["read_back"] = _read_back(loaded, past)
        loaded.figures["prune"] = _prune(loaded, past)
    ratios = {
        name: round(_median(loaded.figures, name) / _median(empty.figures, name), 3)
        for name in OPERATIONS
    }
    return {
        "history_jobs": history_jobs,
        "empty": empty.figures,
        "loaded": loaded.figures,
        "loaded_over_empty": ratios,
        "worst_ratio": max(ratios.values()),
        "within_1_5x": all(ratio <= 1.5 for ratio in ratios.values()),
    }


def _median(figures: Figures, name: str) -> float:
    figure = figures
    for part in name.split("."):
        figure = figure[part]
    return float(figure["median_ms"])


@contextmanager
def _opened(home: Path, layouts: list[history.Layout]) -> Iterator[_Side]:
    """A stack with ``layouts`` loaded, ready to be measured."""
    with stack(home, SETTINGS, processes=()) as running:
        engine = create_engine(running.env["EDITQ_DATABASE_URL"])
        # Built now, while the environment is this stack's.
        container = build(load_settings())
        try:
            # Autovacuum looks at the tables every 5 s rather than every minute, so the wait
            # for its analyze is short; what it does when it looks is unchanged.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ALTER SYSTEM SET autovacuum_naptime = '5s'"))
                conn.execute(text("SELECT pg_reload_conf()"))
            loaded = history.load(engine, layouts)
            figures: Figures = {
                "jobs_loaded": loaded.jobs,
                "rows_loaded": loaded.rows,
                "load_seconds": loaded.load_seconds,
                "vacuum_analyze_seconds": loaded.vacuum_seconds,
            }
            pipeline = dataclasses.replace(container, queue=_Dropped()).pipeline("scheduler")
            yield _Side(running, engine, container, pipeline, running.source_url(), figures)
        finally:
            container.close()
            engine.dispose()


# -- taking turns -------------------------------------------------------------------------


def _measure(sides: dict[str, _Side], working: history.Layout) -> None:
    """Every operation, on both sides in turn; the figures go into each side's."""
    _turns(sides, "create_job", _create_job, CREATES)
    analyzed = {name: _analyzed(side.engine) for name, side in sides.items()}
    for side in sides.values():
        _, took = side.running.submit_batch(QUEUED_ROWS, side.source)
        side.figures["queued_batch_ingest_seconds"] = round(took, 2)
    _wait_for_autoanalyze(sides, analyzed)
    _turns(sides, "dispatch_round", _dispatch_round, ROUNDS)
    for name, query in FILTERS.items():
        known = {k: v or working.batch_id(0) for k, v in query.items()}
        _turns(sides, f"list_jobs.{name}", _walk(name, known), WALKS)
    batch, job = working.batch_id(0), working.job_id(0)
    _turns(sides, "batch_status", _reader(f"/v1/batches/{batch}"), READS)
    _turns(sides, "get_job", _reader(f"/v1/jobs/{job}"), READS)
    for side in sides.values():
        for name, taken in side.taken.items():
            figure = _summary(taken)
            if name == "dispatch_round":
                figure["claimed_per_round"] = statistics.median(side.claimed)
            if name in side.rows:
                figure["rows_per_walk"] = side.rows[name]
            _put(side.figures, name, figure)


def _turns(
    sides: dict[str, _Side],
    name: str,
    call: Callable[[_Side], list[float]],
    times: int,
) -> None:
    """``call`` on each side ``WARM`` times, then ``times`` times taking turns (the order
    swapped every turn); what the later calls timed goes to the side's ``taken[name]``."""
    for side in sides.values():
        for _ in range(WARM):
            call(side)
    order = list(sides.values())
    for turn in range(times):
        for side in order if turn % 2 == 0 else reversed(order):
            side.taken.setdefault(name, []).extend(call(side))


def _analyzed(engine: Engine) -> int:
    """How many times autovacuum has analyzed ``jobs``."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'jobs'")
            ).scalar_one()
        )


def _wait_for_autoanalyze(sides: dict[str, _Side], before: dict[str, int]) -> None:
    """Wait until autovacuum has analyzed ``jobs`` on each side since the queued batch came.

    The dispatch round is planned by what the statistics say of the queued jobs; until
    autovacuum analyzes the table again they know of none, and a round reads the whole
    queue on either database (bench/README.md). The batch is more than 1 % of either
    table, the share of changes after which autovacuum analyzes ``jobs`` (migration
    0010), so it does at its next look at the table.
    """
    started = time.monotonic()
    waiting = dict(sides)
    while waiting:
        for name, side in list(waiting.items()):
            if _analyzed(side.engine) > before[name]:
                side.figures["autoanalyze_wait_seconds"] = round(time.monotonic() - started, 1)
                del waiting[name]
        if time.monotonic() - started > AUTOANALYZE_TIMEOUT:
            raise TimeoutError(f"autovacuum did not analyze jobs on {', '.join(waiting)}")
        time.sleep(1)


def _put(figures: Figures, name: str, figure: Figures) -> None:
    *parents, last = name.split(".")
    for part in parents:
        figures = figures.setdefault(part, {})
    figures[last] = figure


def _summary(seconds: list[float]) -> Figures:
    """Median and 90th percentile, in milliseconds, of ``seconds``."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(statistics.quantiles(ms, n=10)[-1], 2),
        "n": len(ms),
    }


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _get(api: httpx.Client, path: str, params: dict[str, str] | None = None) -> Any:
    answer = api.get(path, params=params)
    answer.raise_for_status()
    return answer.json()


# -- the operations -----------------------------------------------------------------------


def _create_job(side: _Side) -> list[float]:
    """``POST /v1/jobs``: one job with an external id and metadata."""
    side.created += 1
    body = {
        "input": {"image_url": side.source, "prompt": "Put the product on a white background"},
        "external_id": f"bench-{side.created:05d}",
        "metadata": {"order": f"ORD-B{side.created:05d}", "shop": "eu"},
    }
    return [_timed(lambda: side.running.api.post("/v1/jobs", json=body).raise_for_status())]


class _Dropped:
    """A task queue that sends nothing: the dispatch round is timed without the broker."""

    def submit(self, job_id: uuid.UUID, attempt: int) -> None:
        """Dropped."""

    def poll(self, job_id: uuid.UUID, attempt: int) -> None:
        """Dropped."""

    def finalize(self, job_id: uuid.UUID, attempt: int) -> None:
        """Dropped."""

    def cancel_at_provider(self, job_id: uuid.UUID, attempt: int) -> None:
        """Dropped."""

    def finish_batch(self, batch_id: uuid.UUID) -> None:
        """Dropped."""

    def deliver_callback(self, callback_id: uuid.UUID, attempt: int) -> None:
        """Dropped."""


#: What happens to a round's jobs before the next round: their attempts succeed, and so
#: do they, freeing the slots.
_FINISH_ROUND = """
WITH done AS (
    UPDATE jobs SET state = 'succeeded', lease_expires_at = NULL, completed_at = now(),
                    updated_at = now()
    WHERE state = 'submitting' RETURNING id
)
UPDATE attempts SET outcome = 'succeeded', submitted_at = now(), finished_at = now()
WHERE outcome = 'pending' AND job_id IN (SELECT id FROM done)
"""


def _dispatch_round(side: _Side) -> list[float]:
    """One scheduler round, timed from the call to its return; then its jobs finish."""
    claimed: list[int] = []
    took = _timed(lambda: claimed.append(side.pipeline.dispatch()))
    side.claimed += claimed
    with side.engine.begin() as conn:
        conn.execute(text(_FINISH_ROUND))
    return [took]


def _walk(name: str, query: dict[str, str]) -> Callable[[_Side], list[float]]:
    """``GET /v1/jobs`` with ``query``: a page, then ``PAGES - 1`` more by cursor, each
    request timed on its own."""

    def walk(side: _Side) -> list[float]:
        taken, rows = [], 0
        page_params = {**query, "limit": str(PAGE_SIZE)}
        for _ in range(PAGES):
            started = time.perf_counter()
            page = _get(side.running.api, "/v1/jobs", page_params)
            taken.append(time.perf_counter() - started)
            rows += len(page["jobs"])
            if page["next_cursor"] is None:
                break
            page_params = {**page_params, "cursor": page["next_cursor"]}
        side.rows[f"list_jobs.{name}"] = rows
        return taken

    return walk


def _reader(path: str) -> Callable[[_Side], list[float]]:
    """``GET path``, timed."""
    return lambda side: [_timed(lambda: _get(side.running.api, path))]


# -- the loaded database: its size, a sample read back, a prune ---------------------------


def _sizes(engine: Engine) -> Figures:
    """Bytes on disk (tables, their TOAST and indexes) of each table a finished job has
    rows in, in all and per finished job."""
    with engine.connect() as conn:
        finished = int(
            conn.execute(
                text("SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'failed', 'canceled')")
            ).scalar_one()
        )
        tables = {}
        for table in history.TABLES:
            total, heap, indexes = conn.execute(
                text(
                    "SELECT pg_total_relation_size(CAST(:t AS regclass)),"
                    " pg_table_size(CAST(:t AS regclass)), pg_indexes_size(CAST(:t AS regclass))"
                ),
                {"t": table},
            ).one()
            tables[table] = {
                "bytes": int(total),
                "table_bytes": int(heap),
                "index_bytes": int(indexes),
                "bytes_per_finished_job": round(int(total) / finished),
            }
    total = sum(t["bytes"] for t in tables.values())
    return {
        "finished_jobs": finished,
        "bytes": total,
        "bytes_per_finished_job": round(total / finished),
        "tables": tables,
    }


#: One job of every kind among ``ids``, with the rows it has in each table.
_SAMPLE = """
SELECT DISTINCT ON (j.state, j.attempt, j.batch_id IS NULL, j.callback_url IS NULL)
    j.id, j.state::text,
    (SELECT count(*) FROM attempts a WHERE a.job_id = j.id),
    (SELECT count(*) FROM job_outputs o WHERE o.job_id = j.id),
    (SELECT count(*) FROM job_events e WHERE e.job_id = j.id),
    (SELECT count(*) FROM callbacks c WHERE c.job_id = j.id)
FROM jobs j WHERE j.id = ANY(CAST(:ids AS uuid[]))
ORDER BY j.state, j.attempt, j.batch_id IS NULL, j.callback_url IS NULL, j.id
"""


def _read_back(side: _Side, past: history.Layout) -> Figures:
    """A job of every kind the history holds (from its first two blocks), read back
    through the API and compared with its rows; and a loaded batch's status."""
    ids = [past.job_id(g) for g in range(min(past.jobs, 2 * past.block))]
    with side.engine.connect() as conn:
        sample = conn.execute(text(_SAMPLE), {"ids": ids}).all()
    api = side.running.api
    mismatched = []
    for job_id, state, attempts, outputs, events, callbacks in sample:
        job = _get(api, f"/v1/jobs/{job_id}", {"events": "true"})
        seen = (job["state"], len(job["attempts"]), len(job["outputs"]), len(job["events"]))
        if seen != (state, attempts, outputs, events) or len(job["callbacks"]) != callbacks:
            mismatched.append(str(job_id))
    batch = _get(api, f"/v1/batches/{past.batch_id(0)}")
    return {
        "jobs_read": len(sample),
        "kinds": sorted({f"{state} x{attempts}" for _, state, attempts, *_ in sample}),
        "mismatched": mismatched,
        "batch_rows": batch["rows"]["accepted"],
        "batch_counted": sum(batch["counts"].values()),
        "batch_state": batch["state"],
    }


def _prune(side: _Side, past: history.Layout) -> Figures:
    """Prune about the oldest ``PRUNE_SHARE`` of the history with :class:`Retention`, as
    ``editq db prune`` runs it: how many rows went, and how fast.

    The cutoff falls in a block between its batch's last job and its first job sent on
    its own, hours in which no job finished: each round of a prune takes the cutoff
    afresh from the clock, and no job crosses it while the prune runs.
    """
    blocks = max(round(past.jobs * PRUNE_SHARE / past.block), 1)
    cutoff = past.created_at((blocks - 1) * past.block) + timedelta(
        seconds=history.BATCH_SECONDS + 3600
    )

    def retention() -> Retention:
        # The days from now to the cutoff, for the preview and again for the prune.
        days = (datetime.now(UTC) - cutoff) / timedelta(days=1)
        return Retention(
            side.container.database("cli"), side.container.storage, days, archive=False
        )

    preview = retention().preview()
    assert preview is not None
    before = _counts(side.engine)
    started = time.perf_counter()
    report = retention().prune(rounds=1_000_000)
    took = time.perf_counter() - started
    after = _counts(side.engine)
    deleted = {table: before[table] - after[table] for table in before}
    rows = sum(deleted.values())
    return {
        "retain_days": round((datetime.now(UTC) - cutoff) / timedelta(days=1), 2),
        "preview": dataclasses.asdict(preview),
        "reported_jobs": report.jobs,
        "reported_batches": report.batches,
        "deleted": deleted,
        "rows_deleted": rows,
        "seconds": round(took, 2),
        "rows_per_second": round(rows / took),
        "jobs_per_second": round(report.jobs / took),
    }


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: history.count(conn, table) for table in history.TABLES}
