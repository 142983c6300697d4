"""A large history of finished jobs, bulk-loaded in SQL in the shape editq's pipeline writes.

Every job is one row of ``jobs`` with the attempts, the ``job_outputs`` rows, the
``job_events`` history and the producer callbacks (with their delivery log) a real run
leaves: a job that succeeded went ``create``, ``claim``, ``mark_running``,
``begin_finalize``, ``succeed``, and kept its source's facts (the quality gate's size, hash
and thumbnail), its output's quality report on the attempt and the output row; a failed one
was moderated, refused as invalid, or failed five times at the provider; a canceled one
was canceled while queued or while running. The draws are fixed functions of the job's
number, so two loads of the same numbers are the same rows.

The rows are made by ``INSERT ... SELECT`` over ``generate_series``, one chunk of whole
batches per transaction: a plan of the chunk's jobs (their state, provider, attempts and
times) in a temporary table, then each table from the plan, in the order of the times a
real run would have written them, so the rows lie on disk as a real history's do.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text

from worker.dev.samples import PRODUCTS, product_photo
from worker.values.quality import source_facts

#: Jobs one load transaction inserts: a whole number of batch blocks.
CHUNK = 50_000
#: Connections that load chunks at once.
LOADERS = 2
#: The history is made of blocks: a batch of ``BATCH_ROWS`` rows, then jobs sent on their own.
BLOCK = 6_250
BATCH_ROWS = 5_000
#: How long a batch's rows take from its upload to its last job finished.
BATCH_SECONDS = 2 * 3600
#: Distinct source images whose facts (size, hash, thumbnail) the jobs' rows keep.
SOURCES = 64

#: The tables a finished job has rows in, in the order their sizes are reported.
TABLES = (
    "jobs",
    "attempts",
    "job_outputs",
    "job_events",
    "callbacks",
    "callback_attempts",
    "batches",
)


@dataclass(frozen=True, slots=True)
class Layout:
    """Which jobs to make, and when: ``jobs`` numbered from 0 under the name ``name``.

    Job ``g`` is row ``g % block`` of batch ``g // block`` when that is below
    ``batch_rows``, else a job sent on its own. A job sent on its own is created
    ``g * step_ms`` milliseconds after ``start_ms`` (Unix milliseconds); a batch's rows at
    the batch's first job's time, finishing over ``BATCH_SECONDS``. Times are whole
    milliseconds, computed the same way here and in SQL, so this module can name the ids
    the load gives (UUIDv7s, as editq's own, from the creation time and a hash).
    """

    name: str
    jobs: int
    start_ms: int
    step_ms: float
    block: int = BLOCK
    batch_rows: int = BATCH_ROWS

    @classmethod
    def history(cls, jobs: int, days: float, now: datetime) -> Layout:
        """``jobs`` finished jobs spread over the ``days`` before ``now``, the last batch
        finished a few hours before it."""
        span_ms = (days * 86400 - 4 * 3600) * 1000
        return cls("history", jobs, _millis(now - timedelta(days=days)), span_ms / max(jobs, 1))

    @classmethod
    def one_batch(cls, name: str, rows: int, uploaded: datetime) -> Layout:
        """One batch of ``rows`` finished jobs, uploaded at ``uploaded``."""
        return cls(name, rows, _millis(uploaded), 0.0, block=rows, batch_rows=rows)

    def created_ms(self, g: int) -> int:
        """When job ``g`` (or its batch) was created, in Unix milliseconds."""
        first = g - g % self.block if g % self.block < self.batch_rows else g
        # float * float, floored: the very operations the plan's SQL makes.
        return self.start_ms + math.floor(float(first) * self.step_ms)

    def created_at(self, g: int) -> datetime:
        """When job ``g`` (or its batch) was created."""
        return _EPOCH + timedelta(milliseconds=self.created_ms(g))

    def job_id(self, g: int) -> str:
        """The id the load gives job ``g``."""
        return str(v7(self.created_ms(g), f"{self.name}-job-{g}"))

    def batch_id(self, number: int) -> str:
        """The id the load gives batch ``number``."""
        return str(v7(self.created_ms(number * self.block), f"{self.name}-batch-{number}"))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _millis(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(milliseconds=1)


def v7(millis: int, seed: str) -> uuid.UUID:
    """A UUIDv7 for ``millis`` whose other bits come from the md5 of ``seed``: the id
    :func:`_v7_sql` makes in SQL."""
    digest = hashlib.md5(seed.encode()).hexdigest()  # noqa: S324 - a spread of bits, no secret
    variant = 8 + int(digest[3], 16) % 4
    return uuid.UUID(f"{millis:012x}7{digest[0:3]}{variant:x}{digest[4:19]}")


def _v7_sql(millis: str, seed: str) -> str:
    """The SQL of :func:`v7`, for SQL expressions ``millis`` (bigint) and ``seed`` (text)."""
    digest = f"md5({seed})"
    return (
        f"(lpad(to_hex({millis}), 12, '0') || '7' || substr({digest}, 1, 3)"
        f" || to_hex(8 + ('x' || substr({digest}, 4, 1))::bit(4)::int % 4)"
        f" || substr({digest}, 5, 15))::uuid"
    )


def _millis_sql(at: str) -> str:
    """The Unix milliseconds of the SQL timestamp ``at``."""
    return f"floor(extract(epoch FROM {at}) * 1000)::bigint"


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a load inserted, and how long it took (the load, then VACUUM and ANALYZE)."""

    jobs: int
    rows: dict[str, int]
    load_seconds: float
    vacuum_seconds: float


def load(engine: Engine, layouts: list[Layout]) -> Loaded:
    """Insert every layout's jobs, then VACUUM (ANALYZE) and CHECKPOINT.

    The chunks go in on ``LOADERS`` connections at once, each chunk one transaction.
    VACUUM leaves the tables as autovacuum keeps a live database's (hint bits set, the
    visibility map written), rather than starting on the measured operations meanwhile;
    the checkpoint writes the load out before anything is timed.
    """
    started = time.perf_counter()
    chunks = [
        (layout, lo, min(lo + _chunk(layout), layout.jobs))
        for layout in layouts
        for lo in range(0, layout.jobs, _chunk(layout))
    ]
    with ThreadPoolExecutor(LOADERS) as pool:
        # Each loader takes every LOADERS-th chunk, in time order.
        for done in [pool.submit(_loader, engine, chunks[i::LOADERS]) for i in range(LOADERS)]:
            done.result()
    loaded = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) " + ", ".join(TABLES)))
        conn.execute(text("CHECKPOINT"))
        rows = {table: count(conn, table) for table in TABLES}
    return Loaded(
        jobs=sum(layout.jobs for layout in layouts),
        rows=rows,
        load_seconds=round(loaded - started, 1),
        vacuum_seconds=round(time.perf_counter() - loaded, 1),
    )


def _loader(engine: Engine, chunks: list[tuple[Layout, int, int]]) -> None:
    """Load ``chunks`` one after the other on a connection of its own."""
    with engine.connect() as conn:
        conn.execute(text("SET synchronous_commit = off"))
        conn.execute(text("SET timezone = 'UTC'"))
        # The rows are consistent by construction (and read back through the API by the
        # scenario); the foreign keys' per-row checks would double the load's time.
        conn.execute(text("SET session_replication_role = replica"))
        _sources(conn)
        conn.commit()
        for layout, lo, hi in chunks:
            _load_chunk(conn, layout, lo, hi)


def _chunk(layout: Layout) -> int:
    """A chunk of whole blocks, so no batch is split between two transactions."""
    return max(CHUNK // layout.block, 1) * layout.block


def count(conn: Connection, table: str) -> int:
    """The rows of ``table``, one of :data:`TABLES`."""
    # The table names are this module's own constants, never input.
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def _sources(conn: Connection) -> None:
    """The facts the quality gate kept of ``SOURCES`` product photos, as the jobs keep them."""
    conn.execute(
        text("CREATE TEMP TABLE history_sources (i int PRIMARY KEY, facts jsonb NOT NULL)")
    )
    rows = []
    for i in range(SOURCES):
        photo = product_photo(PRODUCTS[i % len(PRODUCTS)], i, size=(1024, 1024))
        rows.append({"i": i, "facts": _json(source_facts(photo).to_json())})
    conn.execute(text("INSERT INTO history_sources VALUES (:i, CAST(:facts AS jsonb))"), rows)


def _json(value: object) -> str:
    return json.dumps(value)


def _load_chunk(conn: Connection, layout: Layout, lo: int, hi: int) -> None:
    """One transaction: the plan of jobs ``lo`` to ``hi``, then every table from it."""
    params = {
        "ns": layout.name,
        "lo": lo,
        "hi": hi,
        "block": layout.block,
        "batch_rows": layout.batch_rows,
        "start_ms": layout.start_ms,
        "step_ms": layout.step_ms,
        "batch_seconds": BATCH_SECONDS,
        "sources": SOURCES,
    }
    for statement in _CHUNK:
        conn.execute(text(statement), params)
    conn.commit()


# -- the statements of one chunk ----------------------------------------------------------
#
# Placeholders (``$u1``, ``$message(...)``) are filled in once, below, from this module's
# own text: no value from outside is ever formatted into a statement.

#: A draw in [0, 1) that is a fixed function of the job's number and the draw's own seed.
_U = "((hashint8extended(g, $seed) & 2147483647) / 2147483648.0)::float8"


def _message(code: str, provider: str) -> str:
    """The error message a job or attempt keeps for an error code, as the adapters word it."""
    return f"""
    CASE {code}
        WHEN 'content_moderated' THEN {provider} || '''s content checker refused the request: '
            || 'body.prompt: The content could not be processed because it contained material '
            || 'flagged by a content checker. (content_policy_violation); change the prompt '
            || 'or image, or raise safety_tolerance'
        WHEN 'provider_validation' THEN {provider} || ' refused the request as invalid: '
            || 'image_url: the image could not be read as an image (422)'
        WHEN 'provider_failed' THEN {provider} || ' reported that the request failed: '
            || 'internal error while generating (500)'
        WHEN 'provider_unavailable' THEN {provider} || ' is unavailable: 503 Service Unavailable'
        WHEN 'canceled' THEN 'canceled by api: no longer needed'
    END"""


_PLAN = """
CREATE TEMP TABLE history_plan ON COMMIT DROP AS
WITH d AS (
    SELECT g, g % :block AS k, (g % :block) < :batch_rows AS in_batch,
           $u1 AS u_state, $u2 AS u_provider, $u3 AS u_kind, $u4 AS u_callback,
           $u5 AS u_time, $u6 AS u_score
    FROM generate_series(CAST(:lo AS int), CAST(:hi AS int) - 1) AS g
), s AS (
    SELECT d.*,
        CASE WHEN u_state < 0.90 THEN 'succeeded'
             WHEN u_state < 0.97 THEN 'failed' ELSE 'canceled' END AS state,
        CASE WHEN u_provider < 0.60 THEN 'fal'
             WHEN u_provider < 0.85 THEN 'runware' ELSE 'runflow' END AS last_provider,
        CAST(:start_ms AS bigint) + floor(
            CAST(CASE WHEN in_batch THEN g - k ELSE g END AS float8) * CAST(:step_ms AS float8)
        )::bigint AS created_ms
    FROM d
), t AS (
    SELECT s.*, to_timestamp(created_ms / 1000.0) AS created_at FROM s
), n AS (
    SELECT t.*,
        CASE state WHEN 'succeeded' THEN CASE WHEN u_kind < 0.9 THEN 1 ELSE 2 END
                   WHEN 'failed' THEN CASE WHEN u_kind < 0.75 THEN 1 ELSE 5 END
                   ELSE CASE WHEN u_kind < 0.5 THEN 0 ELSE 1 END END AS attempts,
        CASE state WHEN 'failed' THEN CASE WHEN u_kind < 0.6 THEN 'content_moderated'
                                           WHEN u_kind < 0.75 THEN 'provider_validation'
                                           ELSE 'provider_failed' END
                   WHEN 'canceled' THEN 'canceled' END AS error_code,
        CASE WHEN in_batch THEN 'SKU-' || lpad(k::text, 6, '0')
             WHEN g % 2 = 0 THEN 'ORD-' || lpad(g::text, 8, '0') END AS external_id
    FROM t
)
SELECT n.*,
    $job_id AS id,
    CASE WHEN in_batch THEN $batch_id END AS batch_id,
    CASE WHEN attempts = 0 THEN 'fal' ELSE last_provider END AS provider,
    created_at + make_interval(secs => CASE
        WHEN in_batch THEN (k + 1) * CAST(:batch_seconds AS float8) / :batch_rows
        ELSE 2 END + attempts * 8 + 3 + u_time * 20) AS completed_at,
    u_callback < CASE WHEN in_batch THEN 0.05 ELSE 0.4 END AS has_callback,
    (ARRAY['Replace the background with a sunlit beach',
           'Put the product on a white studio background',
           'Add soft morning light from the left',
           'Remove the price tag from the product',
           'Place it on a wooden kitchen table',
           'Make the sky behind it a clear blue'])[1 + g % 6] AS prompt,
    CASE WHEN in_batch THEN jsonb_build_object(
            'sku', 'SKU-' || lpad(k::text, 6, '0'),
            'shop', (ARRAY['eu', 'us', 'uk', 'jp'])[1 + g % 4],
            'campaign', (ARRAY['spring', 'summer', 'autumn', 'winter'])[1 + (g / :block) % 4],
            'source', 'catalog')
         ELSE jsonb_build_object(
            'order', 'ORD-' || lpad(g::text, 8, '0'),
            'customer', 'C' || (g % 5000),
            'shop', (ARRAY['eu', 'us', 'uk', 'jp'])[1 + g % 4]) END AS metadata,
    'outputs/' || $job_id || '/0.jpg' AS output_key,
    180000 + (hashint8extended(g, 7) & 262143) AS output_bytes,
    md5(:ns || '-out-a-' || g) || md5(:ns || '-out-b-' || g) AS output_sha256,
    jsonb_build_object(
        'flags', '[]'::jsonb,
        'checks', jsonb_build_object('size', 'pass', 'blank', 'pass', 'format', 'pass',
                                     'decodes', 'pass', 'moderated', 'pass',
                                     'unchanged', 'pass'),
        'failed', NULL::text, 'passed', true,
        'scores', jsonb_build_object(
            'mean', round((90 + u_score * 80)::numeric, 1), 'width', 1024,
            'format', 'jpeg', 'height', 1024,
            'stddev', round((40 + u_time * 60)::numeric, 2),
            'distance', round((0.2 + u_score * 0.3)::numeric, 4), 'expected', '1:1',
            'color_difference', round((0.3 + u_kind * 0.6)::numeric, 4))
    ) AS report
FROM n
"""
for _seed in range(1, 7):
    _PLAN = _PLAN.replace(f"$u{_seed}", _U.replace("$seed", str(_seed)))
_PLAN = _PLAN.replace("$job_id", _v7_sql("created_ms", "(:ns || '-job-' || g)")).replace(
    "$batch_id", _v7_sql("created_ms", "(:ns || '-batch-' || (g / :block))")
)

_ATTEMPT_PLAN = """
CREATE TEMP TABLE history_attempts ON COMMIT DROP AS
SELECT p.g, p.id AS job_id, a.number, a.number = p.attempts AS last,
    $attempt_id AS id,
    md5(:ns || '-request-' || p.g || '-' || a.number)::uuid::text AS request_id,
    CASE WHEN a.number < p.attempts AND p.state = 'succeeded' THEN 'fal' ELSE p.provider END
        AS provider,
    CASE WHEN a.number < p.attempts THEN 'failed'
         WHEN p.state = 'succeeded' THEN 'succeeded'
         WHEN p.state = 'failed' THEN 'failed' ELSE 'canceled' END AS outcome,
    CASE WHEN a.number < p.attempts AND p.state = 'succeeded' THEN 'provider_unavailable'
         WHEN a.number < p.attempts THEN 'provider_failed'
         WHEN p.state = 'failed' THEN p.error_code END AS error_code,
    p.completed_at - make_interval(secs => (p.attempts - a.number + 1) * 8 - 0.05) AS created_at,
    p.completed_at - make_interval(secs => (p.attempts - a.number + 1) * 8 - 0.35)
        AS submitted_at,
    p.completed_at - make_interval(secs => (p.attempts - a.number) * 8) AS finished_at
FROM history_plan p CROSS JOIN LATERAL generate_series(1, p.attempts) AS a(number)
""".replace(
    "$attempt_id",
    _v7_sql(
        _millis_sql("(p.completed_at - make_interval(secs => (p.attempts - a.number + 1) * 8))"),
        "(:ns || '-attempt-' || p.g || '-' || a.number)",
    ),
)

_BATCHES = """
INSERT INTO batches (id, state, model, providers, priority, callback_url, request_hash,
                     rows_total, rows_accepted, rows_rejected, results_key, errors_key,
                     created_at, updated_at, completed_at)
SELECT batch_id, 'completed'::batch_state, 'flux-kontext-pro', '{}'::text[], 0,
    CASE WHEN (min(g) / :block) % 4 = 0 THEN 'https://shop.example.com/hooks/editq/batches' END,
    md5(:ns || '-batch-hash-' || batch_id) || md5(:ns || '-batch-hash2-' || batch_id),
    count(*), count(*), 0,
    'batches/' || batch_id || '/results.jsonl', 'batches/' || batch_id || '/errors.jsonl',
    min(created_at), max(completed_at) + interval '3 seconds',
    max(completed_at) + interval '3 seconds'
FROM history_plan WHERE batch_id IS NOT NULL GROUP BY batch_id
"""

_JOBS = """
INSERT INTO jobs (id, state, model, input, providers, routing, provider, attempt,
                  failed_attempts, max_attempts, priority, external_id, batch_id,
                  callback_url, metadata, excluded_providers, idempotency_key, request_hash,
                  run_after, error_code, error_message, cost_usd, step, steps,
                  callback_events, quality, quality_retries, source_facts,
                  created_at, updated_at, completed_at)
SELECT p.id, p.state::job_state, 'flux-kontext-pro',
    jsonb_build_object(
        'prompt', p.prompt,
        'image_url', 'https://shop-assets.s3.eu-west-1.amazonaws.com/catalog/'
            || md5(:ns || '-src-' || g) || '.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256'
            || '&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F' || to_char(created_at, 'YYYYMMDD')
            || '%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date='
            || to_char(created_at, 'YYYYMMDD"T"HH24MISS"Z"')
            || '&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature='
            || md5(:ns || '-sig-a-' || g) || md5(:ns || '-sig-b-' || g),
        'num_images', 1, 'output_format', 'jpeg'),
    ARRAY['fal', 'runware', 'runflow'], 'spread', p.provider, p.attempts,
    CASE WHEN p.state = 'canceled' THEN 0
         WHEN p.state = 'failed' THEN p.attempts ELSE p.attempts - 1 END,
    5, 0, p.external_id, p.batch_id,
    CASE WHEN has_callback THEN 'https://shop.example.com/hooks/editq/jobs' END,
    p.metadata, '{}'::jsonb,
    CASE WHEN NOT in_batch AND g % 2 = 0 THEN :ns || '-order-' || g END,
    CASE WHEN NOT in_batch THEN md5(:ns || '-req-a-' || g) || md5(:ns || '-req-b-' || g) END,
    CASE WHEN p.attempts > 1
         THEN p.completed_at - make_interval(secs => 8 * p.attempts + 1)
         ELSE p.created_at END,
    p.error_code, $message(p.error_code, p.provider),
    CASE WHEN p.state = 'succeeded' THEN 0.04 ELSE 0 END,
    1, '[]'::jsonb, '{}'::text[], NULL, 0,
    CASE WHEN p.state = 'succeeded' THEN s.facts END,
    p.created_at, p.completed_at, p.completed_at
FROM history_plan p JOIN history_sources s ON s.i = p.g % :sources
ORDER BY p.created_at, p.g
""".replace("$message(p.error_code, p.provider)", _message("p.error_code", "p.provider"))

_ATTEMPTS = """
INSERT INTO attempts (id, job_id, number, step, provider, outcome, request_id, provider_data,
                      result, error_code, error_message, cost_usd, quality,
                      created_at, submitted_at, finished_at)
SELECT a.id, a.job_id, a.number, 1, a.provider, a.outcome, a.request_id,
    CASE a.provider
        WHEN 'fal' THEN jsonb_build_object(
            'cancel_url', 'https://queue.fal.run/fal-ai/flux-pro/kontext/requests/'
                || a.request_id || '/cancel',
            'status_url', 'https://queue.fal.run/fal-ai/flux-pro/kontext/requests/'
                || a.request_id || '/status',
            'response_url', 'https://queue.fal.run/fal-ai/flux-pro/kontext/requests/'
                || a.request_id)
        WHEN 'runware' THEN jsonb_build_object('uploaded', false, 'images', 1,
            'content_type', 'image/jpeg', 'size', jsonb_build_array(1024, 1024))
        ELSE '{}'::jsonb END,
    CASE WHEN a.outcome = 'succeeded' THEN jsonb_build_object(
        'outputs', jsonb_build_array(jsonb_build_object(
            'key', NULL::text,
            'url', 'https://v3.fal.media/files/' || md5(a.request_id) || '.jpg',
            'width', 1024, 'height', 1024, 'stored', false, 'flagged', false,
            'content_type', 'image/jpeg')),
        'cost_usd', NULL::text) END,
    a.error_code, $message(a.error_code, a.provider),
    CASE WHEN a.outcome = 'succeeded' THEN 0.04 END,
    CASE WHEN a.outcome = 'succeeded'
         THEN jsonb_build_array(p.report || jsonb_build_object('key', p.output_key)) END,
    a.created_at, a.submitted_at, a.finished_at
FROM history_attempts a JOIN history_plan p ON p.g = a.g
ORDER BY a.created_at, a.g
""".replace("$message(a.error_code, a.provider)", _message("a.error_code", "a.provider"))

_OUTPUTS = """
INSERT INTO job_outputs (job_id, step, index, key, content_type, width, height, bytes,
                         sha256, quality)
SELECT id, 1, 0, output_key, 'image/jpeg', 1024, 1024, output_bytes, output_sha256, report
FROM history_plan WHERE state = 'succeeded'
ORDER BY completed_at, g
"""

_EVENTS = """
INSERT INTO job_events (job_id, at, transition, state, attempt, actor, reason, data)
SELECT job_id, at, transition, state::job_state, attempt, actor, reason, data FROM (
    SELECT id AS job_id, created_at AS at, 'create' AS transition, 'queued' AS state,
           0 AS attempt, 'api' AS actor, NULL AS reason, '{}'::jsonb AS data, g, 0 AS seq
    FROM history_plan
    UNION ALL
    SELECT job_id, created_at, 'claim', 'submitting', number, 'scheduler', NULL,
           jsonb_build_object('provider', provider, 'attempt_id', id), g, number * 10 + 1
    FROM history_attempts
    UNION ALL
    SELECT job_id, submitted_at, 'mark_running', 'running', number, 'worker', NULL,
           jsonb_build_object('request_id', request_id), g, number * 10 + 2
    FROM history_attempts
    UNION ALL
    SELECT job_id, finished_at, 'requeue', 'queued', number, 'webhook', error_code,
           jsonb_build_object('kind', 'retryable', 'delay_seconds', power(2, number)),
           g, number * 10 + 3
    FROM history_attempts WHERE NOT last
    UNION ALL
    SELECT job_id, finished_at - interval '400 ms', 'begin_finalize', 'finalizing', number,
           'webhook', NULL, '{}'::jsonb, g, number * 10 + 4
    FROM history_attempts WHERE last AND outcome = 'succeeded'
    UNION ALL
    SELECT a.job_id, a.finished_at,
        CASE a.outcome WHEN 'succeeded' THEN 'succeed' WHEN 'failed' THEN 'fail'
                       ELSE 'cancel' END,
        p.state, a.number,
        CASE a.outcome WHEN 'succeeded' THEN 'worker' WHEN 'failed' THEN 'webhook'
                       ELSE 'api' END,
        CASE a.outcome WHEN 'failed' THEN a.error_code
                       WHEN 'canceled' THEN 'no longer needed' END,
        CASE a.outcome WHEN 'succeeded' THEN jsonb_build_object('step', 1, 'outputs', 1)
            WHEN 'failed' THEN jsonb_build_object('kind', CASE a.error_code
                WHEN 'provider_failed' THEN 'retryable' ELSE 'terminal' END)
            ELSE '{}'::jsonb END,
        a.g, a.number * 10 + 5
    FROM history_attempts a JOIN history_plan p ON p.g = a.g WHERE a.last
    UNION ALL
    SELECT id, completed_at, 'cancel', 'canceled', 0, 'api', 'no longer needed', '{}'::jsonb,
           g, 5
    FROM history_plan WHERE attempts = 0
) AS e
ORDER BY at, g, seq
"""

_ISO = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''

#: A job's terminal event as :func:`worker.values.callback_events.job_payload` stores it,
#: and a batch's ``batch.completed``; each delivered at the first try.
_CALLBACKS = """
INSERT INTO callbacks (id, job_id, batch_id, url, event, payload, state, attempts,
                       next_attempt_at, last_status, created_at, delivered_at)
SELECT $job_callback_id, id, NULL,
    'https://shop.example.com/hooks/editq/jobs', 'job.' || state,
    jsonb_build_object('type', 'job.' || state,
        'timestamp', to_char(completed_at, $iso),
        'data', jsonb_build_object(
            'id', id, 'external_id', external_id, 'batch_id', batch_id,
            'model', 'flux-kontext-pro', 'provider', provider,
            'steps', jsonb_build_array(jsonb_build_object('step', 1, 'prompt', prompt,
                'outputs', outputs)),
            'cost_usd', CASE WHEN state = 'succeeded' THEN '0.0400' ELSE '0.0000' END,
            'metadata', metadata,
            'created_at', to_char(created_at, $iso),
            'state', state,
            'outputs', outputs,
            'error', CASE WHEN error_code IS NOT NULL THEN jsonb_build_object(
                'code', error_code, 'message', $message(error_code, provider), 'step', 1) END,
            'completed_at', to_char(completed_at, $iso))),
    'delivered', 1, completed_at, 200, completed_at, completed_at + interval '150 ms'
FROM (
    SELECT history_plan.*,
        CASE WHEN state = 'succeeded' THEN jsonb_build_array(jsonb_build_object(
            'index', 0, 'key', output_key, 'content_type', 'image/jpeg', 'width', 1024,
            'height', 1024, 'bytes', output_bytes, 'sha256', output_sha256,
            'quality', report, 'step', 1)) ELSE '[]'::jsonb END AS outputs
    FROM history_plan WHERE has_callback
) AS p
UNION ALL
SELECT $batch_callback_id, NULL, b.id, b.callback_url,
    'batch.completed',
    jsonb_build_object('type', 'batch.completed',
        'timestamp', to_char(b.completed_at, $iso),
        'data', jsonb_build_object('id', b.id, 'state', 'completed',
            'rows_total', b.rows_total, 'rows_accepted', b.rows_accepted, 'rows_rejected', 0,
            'results_key', b.results_key, 'errors_key', b.errors_key,
            'completed_at', to_char(b.completed_at, $iso))),
    'delivered', 1, b.completed_at, 200, b.completed_at, b.completed_at + interval '150 ms'
FROM batches b
WHERE b.callback_url IS NOT NULL
  AND b.id IN (SELECT batch_id FROM history_plan WHERE batch_id IS NOT NULL)
"""
_CALLBACKS = (
    _CALLBACKS.replace("$message(error_code, provider)", _message("error_code", "provider"))
    .replace("$iso", _ISO)
    .replace(
        "$job_callback_id",
        _v7_sql(_millis_sql("completed_at"), "(:ns || '-callback-' || g)"),
    )
    .replace(
        "$batch_callback_id",
        _v7_sql(_millis_sql("b.completed_at"), "(:ns || '-batch-callback-' || b.id)"),
    )
)

_CALLBACK_ATTEMPTS = """
INSERT INTO callback_attempts (callback_id, at, status, error, duration_ms)
SELECT c.id, c.delivered_at - interval '120 ms', 200, NULL, 40 + abs(hashtext(c.id::text)) % 160
FROM callbacks c
WHERE c.job_id IN (SELECT id FROM history_plan WHERE has_callback)
   OR (c.job_id IS NULL
       AND c.batch_id IN (SELECT batch_id FROM history_plan WHERE batch_id IS NOT NULL))
ORDER BY c.delivered_at
"""

_CHUNK = (
    _PLAN,
    _ATTEMPT_PLAN,
    _BATCHES,
    _JOBS,
    _ATTEMPTS,
    _OUTPUTS,
    _EVENTS,
    _CALLBACKS,
    _CALLBACK_ATTEMPTS,
)
