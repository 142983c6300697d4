"""The HTTP API fuzzed from its own OpenAPI document: no 5xx, one error shape, nothing half-written.

Cases are drawn from schemathesis strategies built from the document the running app serves,
in both its positive (schema-valid) and negative (schema-violating) modes, and are sent over
real HTTP to the real app on real PostgreSQL. After every answer the tables are compared with
before: an answer that is not a success wrote nothing, a create wrote one job and its 'create'
event, a cancel or retry one event, and a read nothing at all. Webhooks, whose bodies the
document does not describe, are fuzzed with hypothesis strategies of their own.

schemathesis' own pytest entry point (``@schema.parametrize()`` on a schema loaded by
``schemathesis.pytest.from_fixture``) does not run under pytest 9 (it assigns
``Function._nodeid``, which pytest 9 removed), and the document can only be loaded once a
fixture serves the app; so each operation's strategy is taken with
``APIOperation.as_strategy`` and run under an ``@given`` of our own. That leaves out
schemathesis' coverage phase (its explicit boundary cases); its fuzzing is what runs here.

No scheduler or Celery worker runs: created jobs stay queued.
"""

from __future__ import annotations

import copy
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema
from sqlalchemy import text

from emulators.server import run_in_thread
from tests.factories import data_uri, job_body, job_request
from tests.integration.conftest import API_KEY
from worker.api.app import create_app
from worker.usecases.batch_ingest import BatchOptions
from worker.values.storable import MAX_JSON_DEPTH
from worker.wiring import Container

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_KEY}"}

settings.register_profile(
    "api-fuzz",
    max_examples=100,
    # A case is an HTTP round trip plus two table snapshots; timing varies with the machine.
    deadline=None,
    # The same cases on every run, so a CI failure reproduces locally.
    derandomize=True,
    database=None,
)
FUZZ = settings.get_profile("api-fuzz")
#: Cases without a key only need to show that each one is refused.
FUZZ_WITHOUT_KEY = settings(FUZZ, max_examples=30)

#: What schemathesis checks of each answer, besides the invariants below. Left out:
#: ``status_code_conformance``, because the document lists only 2xx and 422 while the API also
#: answers 401, 404, 409 and 413 by design; ``positive_data_acceptance``, because JSON Schema
#: cannot say "an http(s) URL or a data:image URI" (so schema-valid bodies are rightly refused)
#: and a schema-valid UUID names no job (a rightful 404); ``negative_data_rejection``, because
#: the API ignores query parameters it does not know, as HTTP APIs do, which that check counts
#: as accepting invalid data. ``response_schema_conformance`` holds for 422s only loosely: the
#: document describes them as FastAPI's default ``{"detail": [...]}`` with no required key, so
#: the error shape is asserted here instead.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

#: Every operation that takes input; ``test_every_operation_that_takes_input_is_fuzzed`` keeps
#: this list in step with the served document.
OPERATIONS = [
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "POST /v1/jobs/{job_id}/retry",
    "POST /v1/jobs/retry",
    "GET /v1/providers",
    "POST /v1/webhooks/{provider}",
    "POST /v1/batches",
    "GET /v1/batches",
    "GET /v1/batches/{batch_id}",
    "POST /v1/batches/{batch_id}/cancel",
    "GET /v1/batches/{batch_id}/results",
]
BEHIND_THE_KEY = [label for label in OPERATIONS if not label.startswith("POST /v1/webhooks")]
PROVIDERS = ("fal", "runware", "runflow")
#: A few keys shared by many cases, so replays (200) and conflicts (409) happen, not only 201s.
IDEMPOTENCY_KEYS = ("fuzz-key-1", "fuzz-key-2", "fuzz-key-3")
IMAGE_URLS = ("https://images.example.com/mug.jpg", data_uri())
#: Text PostgreSQL cannot store (NUL) or that is easy to mishandle; generated strings seldom
#: hold any, so cases get them on purpose.
ODD_TEXT = ("\x00", "job\x00", "\x00\x00", "\u202e\ufeff\u0301", "\U0001f916", "'; --", "%00")
#: Stands for a job made just before the case is sent, in a state its operation can move.
FRESH_JOB = "fresh-job"
#: Batch files as producers send them: a header, then rows; sometimes drawn instead of noise.
CATALOG_HEADERS = ("external_id,image_url,prompt", "external_id,image_url,prompt,num_images")


@schemathesis.serializer("text/csv", "application/x-ndjson")
def _file_body(_: Any, value: Any) -> bytes:
    """A batch file as sent: text as UTF-8 (a lone surrogate stays invalid UTF-8)."""
    text_value = value if isinstance(value, str) else json.dumps(value)
    return text_value.encode("utf-8", "surrogatepass")


class Answer(Protocol):
    """An HTTP answer, from schemathesis or httpx."""

    status_code: int

    def json(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Rows:
    """What the tables hold: row counts, and a digest that changes when any job or attempt does."""

    jobs: int
    events: int
    digest: str


def _rows(container: Container) -> Rows:
    with container.engine.connect() as conn:
        jobs, events, digest = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM job_events),"
                " md5((SELECT coalesce(string_agg(j::text, '|' ORDER BY j.id), '') FROM jobs j)"
                " || (SELECT coalesce(string_agg(a::text, '|' ORDER BY a.id), '') FROM attempts a))"
            )
        ).one()
    return Rows(int(jobs), int(events), str(digest))


def _transitions(container: Container, job_id: str) -> list[str]:
    with container.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT transition FROM job_events WHERE job_id = :id ORDER BY id"),
            {"id": job_id},
        )
        return [r.transition for r in rows]


@dataclass(frozen=True, slots=True)
class Running:
    """A job running at a provider: the attempt a forged webhook would aim at."""

    job_id: str
    attempt_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class Seeds:
    """Jobs in several states, so that fuzzed ids sometimes name a real job."""

    queued: str
    canceled: str
    running: dict[str, Running]
    batch: str

    @property
    def job_ids(self) -> list[str]:
        return [self.queued, self.canceled, *(r.job_id for r in self.running.values())]


@pytest.fixture(scope="module")
def api_url(container: Container) -> Iterator[str]:
    """The real app served over real HTTP."""
    with run_in_thread(create_app(container)) as server:
        yield server.url


@pytest.fixture
def api_schema(api_url: str) -> OpenApiSchema:
    """The OpenAPI document the running app serves, loaded by schemathesis."""
    # Loaded afresh for each test: schemathesis keeps state in a schema between uses, which
    # would make one test's cases depend on which tests ran before it.
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


@pytest.fixture
def seeds(container: Container) -> Seeds:
    """A job running on each provider (submitted to its emulator), a queued and a canceled one."""
    jobs = container.jobs("test")
    running_ids = {p: jobs.create(job_request(providers=(p,)))[0].id for p in PROVIDERS}
    pipeline = container.pipeline("test")
    assert pipeline.dispatch() == len(PROVIDERS)
    running = {}
    for provider, job_id in running_ids.items():
        assert pipeline.submit(job_id, 1) == "running"
        [attempt] = jobs.get(job_id).attempts
        assert attempt.request_id is not None
        running[provider] = Running(str(job_id), str(attempt.id), attempt.request_id)
    queued = jobs.create(job_request())[0].id
    canceled = jobs.create(job_request())[0].id
    jobs.cancel(canceled, "seeded")
    rows = f"external_id,image_url,prompt\nA,{IMAGE_URLS[0]},x\nB,{IMAGE_URLS[0]},y\n"
    batch = container.batches("test").submit(io.BytesIO(rows.encode()), "csv", BatchOptions())
    return Seeds(str(queued), str(canceled), running, str(batch.batch.id))


def _string_paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield at
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_paths(item, (*at, index))


def _with_odd_text(draw: st.DrawFn, value: Any) -> Any:
    """A copy of ``value`` with one of its strings, at any depth, made odd."""
    paths = list(_string_paths(value))
    if not paths or not isinstance(value, dict | list):
        return value
    *parents, last = draw(st.sampled_from(paths))
    changed = copy.deepcopy(value)
    holder = changed
    for step in parents:
        holder = holder[step]
    holder[last] = draw(st.sampled_from(["", holder[last]])) + draw(st.sampled_from(ODD_TEXT))
    return changed


@st.composite
def _cases(
    draw: st.DrawFn, label: str, schema: OpenApiSchema, seeds: Seeds, headers: dict[str, str]
) -> OpenApiCase:
    """A generated case for ``label``, steered now and then towards inputs that reach the database.

    Left alone, a schema-valid body is almost never a valid job (the image URL rule is not in
    the schema), a schema-valid UUID never names a job, and generated text seldom holds a NUL;
    so, each on a coin flip (three in four for ids and image URLs), a case gets the id of a
    real job (or of a fresh one) or provider, a usable image URL, a shared idempotency key, a
    reason for a cancel or retry, or odd text in one of its query or body strings.
    """
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    case = draw(
        st.one_of([operation.as_strategy(mode, headers=headers) for mode in GenerationMode])
    )
    if "job_id" in case.path_parameters and draw(st.integers(0, 3)):
        job_id = draw(st.sampled_from(seeds.job_ids) | st.just(FRESH_JOB))
        case.path_parameters = {"job_id": job_id}
    if "batch_id" in case.path_parameters and draw(st.integers(0, 3)):
        case.path_parameters = {"batch_id": seeds.batch}
    if label == "POST /v1/batches" and draw(st.booleans()):
        header = draw(st.sampled_from(CATALOG_HEADERS))
        # No lone surrogates: schemathesis cannot revalidate a text body holding one.
        cells = st.text(
            st.characters(exclude_characters=',"\r\n', exclude_categories=["Cs"]), max_size=12
        )
        url = st.sampled_from(IMAGE_URLS[:1]) | cells
        rows = st.lists(st.tuples(cells, url, cells, cells), max_size=4)
        body = (
            header
            + "\n"
            + "".join(",".join(row[: header.count(",") + 1]) + "\n" for row in draw(rows))
        )
        case.body = draw(st.sampled_from([body, _with_odd_text(draw, [body])[0]]))
        case.media_type = "text/csv"
        if draw(st.booleans()):
            case.headers["Idempotency-Key"] = draw(st.sampled_from(IDEMPOTENCY_KEYS))
    if label.endswith(("/cancel", "/retry")) and draw(st.booleans()):
        case.body = {"reason": draw(st.text(max_size=40))}
    if "provider" in case.path_parameters and draw(st.booleans()):
        case.path_parameters = {"provider": draw(st.sampled_from(PROVIDERS))}
    if label == "POST /v1/jobs":
        edit = case.body.get("input") if isinstance(case.body, dict) else None
        if isinstance(edit, dict) and draw(st.integers(0, 3)):
            assert isinstance(case.body, dict)  # edit came out of it
            image_url = draw(st.sampled_from(IMAGE_URLS))
            case.body = {**case.body, "input": {**edit, "image_url": image_url}}
        if draw(st.booleans()):
            case.headers["Idempotency-Key"] = draw(st.sampled_from(IDEMPOTENCY_KEYS))
    if bool(case.query) and draw(st.booleans()):
        case.query = _with_odd_text(draw, case.query)
    if isinstance(case.body, dict | list) and draw(st.booleans()):
        case.body = _with_odd_text(draw, case.body)
    return case


def _described(case: OpenApiCase, response: Response) -> str:
    # Hypothesis prints a Case as nothing (schemathesis gives it an empty pretty-printer), so
    # a failure names the request it sent.
    return f"{response.status_code} {response.text[:500]}\n{case.as_curl_command()}"


def _assert_error_shape(response: Answer) -> None:
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    if response.status_code == 422:
        fields = error.get("fields")
        assert isinstance(fields, list) and fields, body
        for field in fields:
            assert isinstance(field.get("field"), str) and field["field"], body
            assert isinstance(field.get("rule"), str) and field["rule"], body


def _assert_wrote_only_what_it_should(
    container: Container, case: OpenApiCase, response: Response, before: Rows, after: Rows
) -> None:
    status, label = response.status_code, case.operation.label
    if not 200 <= status < 300:
        assert after == before, f"half-written: {_described(case, response)}"
    elif label == "POST /v1/jobs" and status == 201:
        assert (after.jobs, after.events) == (before.jobs + 1, before.events + 1)
        assert _transitions(container, response.json()["id"]) == ["create"]
    elif label == "POST /v1/jobs":
        assert status == 200, status  # an idempotent replay: the first job, nothing new
        assert after == before
    elif label == "POST /v1/batches" and status == 201:
        accepted = response.json()["rows"]["accepted"]
        assert (after.jobs, after.events) == (before.jobs + accepted, before.events + accepted)
    elif label == "POST /v1/batches":
        assert status == 200, status  # an idempotent replay: the first batch, nothing new
        assert after == before
    elif label == "POST /v1/batches/{batch_id}/cancel":
        assert after.jobs == before.jobs and after.events >= before.events
        assert response.json()["counts"]["queued"] == 0
    elif label == "POST /v1/jobs/retry":
        report = response.json()
        retried = 0 if report["dry_run"] else report["retried"]
        assert (after.jobs, after.events) == (before.jobs, before.events + retried)
    elif label.endswith(("/cancel", "/retry")):
        assert (after.jobs, after.events) == (before.jobs, before.events + 1)
        action = label.rsplit("/", 1)[1]
        assert _transitions(container, case.path_parameters["job_id"])[-1] == action
    else:
        assert label.startswith("GET "), f"{label} answered {status}"
        assert after == before, f"{label} is a read but changed the tables"


def _fresh_job(container: Container, label: str) -> str:
    """A queued job, or a canceled one for a retry: one the case's operation can move."""
    jobs = container.jobs("test")
    job = jobs.create(job_request())[0]
    if label.endswith("/retry"):
        jobs.cancel(job.id, "so that it can be retried")
    return str(job.id)


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_with_the_key_get_no_5xx_and_write_nothing_half(
    label: str, api_schema: OpenApiSchema, container: Container, seeds: Seeds
) -> None:
    session = requests.Session()

    @FUZZ
    @given(case=_cases(label, api_schema, seeds, {"Authorization": AUTH["Authorization"]}))
    def fuzz(case: OpenApiCase) -> None:
        if case.path_parameters.get("job_id") == FRESH_JOB:
            case.path_parameters = {"job_id": _fresh_job(container, label)}
        before = _rows(container)
        response = case.call(session=session)
        after = _rows(container)
        # Tables first, so that a 500 after a write is reported as the half-write it is.
        _assert_wrote_only_what_it_should(container, case, response, before, after)
        assert response.status_code < 500, _described(case, response)
        if response.status_code >= 400:
            _assert_error_shape(response)
        if label.startswith("POST /v1/webhooks"):
            # Nothing in a fuzzed callback is signed with the providers' secrets.
            assert 400 <= response.status_code < 500, _described(case, response)
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 201 and "Idempotency-Key" in case.headers:
            # The same request with the same key gives back the same job and writes nothing.
            again = case.call(session=session)
            assert again.status_code == 200, _described(case, again)
            assert again.json()["id"] == response.json()["id"]
            assert _rows(container) == after

    with session:
        fuzz()


def _unparsable_body(error: dict[str, Any]) -> bool:
    if error["code"] == "http_error":
        return bool(error["message"] == "There was an error parsing the body")
    return {f["rule"] for f in error.get("fields", [])} == {"json_invalid"}


@pytest.mark.parametrize("label", BEHIND_THE_KEY)
def test_fuzzed_requests_without_the_key_are_refused(
    label: str, api_schema: OpenApiSchema, container: Container, seeds: Seeds
) -> None:
    session = requests.Session()

    # Whatever Authorization header schemathesis draws (or none) is sent as drawn.
    @FUZZ_WITHOUT_KEY
    @given(case=_cases(label, api_schema, seeds, {}))
    def fuzz(case: OpenApiCase) -> None:
        if case.path_parameters.get("job_id") == FRESH_JOB:
            case.path_parameters = {"job_id": _fresh_job(container, label)}
        before = _rows(container)
        response = case.call(session=session)
        assert 400 <= response.status_code < 500, _described(case, response)
        _assert_error_shape(response)
        error = response.json()["error"]
        if response.status_code == 401:
            assert error["code"] == "unauthorized"
        else:
            # FastAPI reads the body before any dependency runs, so a body that is not JSON
            # at all is refused as such before the key is looked at.
            assert _unparsable_body(error), _described(case, response)
        assert _rows(container) == before

    with session:
        fuzz()


@dataclass(frozen=True, slots=True)
class Callback:
    """A forged provider callback."""

    provider: str
    headers: dict[str, bytes]
    query: dict[str, str]
    body: bytes


#: Headers the app must not be handed at random: they frame the HTTP message itself.
_FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te"}
_HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
).map(str.strip)
_HEX = "0123456789abcdef"
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _callbacks(draw: st.DrawFn, seeds: Seeds, now: int) -> Callback:
    """A callback that looks more or less like one of a provider's, aimed at a real attempt."""
    target = draw(st.sampled_from(list(seeds.running.values())))
    ids = st.sampled_from([target.attempt_id, target.request_id, target.job_id, str(uuid.uuid4())])
    values = st.one_of(
        ids,
        st.integers(now - 400, now + 400).map(str),  # around fal's ±300 s timestamp window
        st.text(_HEX, min_size=128, max_size=128),  # the length of fal's Ed25519 signature
        st.text(_HEX, min_size=64, max_size=64),  # the length of a Runflow or Runware HMAC
        _HEADER_TEXT,
    )
    names = st.sampled_from(
        [
            "x-fal-webhook-request-id",
            "x-fal-webhook-user-id",
            "x-fal-webhook-timestamp",
            "x-fal-webhook-signature",
            "runflow-signature",
            "content-type",
        ]
    ) | st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z").filter(lambda n: n.lower() not in _FRAMING)
    headers = draw(st.dictionaries(names, values.map(lambda v: v.encode("latin-1")), max_size=6))
    query = draw(
        st.dictionaries(
            st.sampled_from(["attempt", "token"]) | st.text(max_size=8),
            ids | st.text(_HEX, min_size=64, max_size=64) | st.text(max_size=40),
            max_size=3,
        )
    )
    document = st.fixed_dictionaries(
        {},
        optional={
            "request_id": ids,
            "run_id": ids,
            "status": st.sampled_from(["OK", "ERROR", "COMPLETED", "FAILED", "IN_PROGRESS"]),
            "metadata": st.fixed_dictionaries({"editq_attempt": ids}),
            "payload": _JSON,
            "data": st.lists(st.fixed_dictionaries({"taskUUID": ids}), max_size=2),
        },
    )
    body = draw(st.binary(max_size=200) | (document | _JSON).map(lambda d: json.dumps(d).encode()))
    provider = draw(
        st.sampled_from(PROVIDERS)
        # A slash or a dot segment would make it another path, not another provider.
        | st.text(min_size=1, max_size=20).filter(lambda p: "/" not in p and p.strip("."))
    )
    return Callback(provider, headers, query, body)


def test_fuzzed_webhooks_are_refused_and_move_no_job(
    api_url: str, container: Container, seeds: Seeds
) -> None:
    client = httpx.Client(base_url=api_url)

    @FUZZ
    @given(callback=_callbacks(seeds, int(time.time())))
    def fuzz(callback: Callback) -> None:
        before = _rows(container)
        response = client.post(
            f"/v1/webhooks/{quote(callback.provider, safe='')}",
            content=callback.body,
            headers=callback.headers,  # type: ignore[arg-type]  # httpx takes str names with bytes values; its stubs want one kind
            params=callback.query,
        )
        # Nothing here is signed with a provider's secret: a known provider refuses it as
        # unverified, and any other name is not a provider.
        expected = 401 if callback.provider in PROVIDERS else 404
        assert response.status_code == expected, f"{response.status_code} {response.text[:500]}"
        _assert_error_shape(response)
        assert _rows(container) == before

    with client:
        fuzz()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _job_json(**raw_fields: str) -> str:
    """A valid job body as JSON text, with ``raw_fields`` spliced in as raw JSON values."""
    body = job_body(input={"image_url": "https://images.example.com/mug.jpg"})
    kept = json.dumps({k: v for k, v in body.items() if k not in raw_fields})
    return kept[:-1] + "".join(f", {json.dumps(k)}: {v}" for k, v in raw_fields.items()) + "}"


#: Bodies the fuzz found to give a 500, or to be written and then answered with a 500, and
#: their kin that JSON Schema generation does not produce (lone surrogates, NaN, deep nesting).
UNSTORABLE_JOBS = [
    pytest.param(
        {"input": '{"prompt": "a\\u0000b", "image_url": "https://a.example/b.jpg"}'},
        "input.prompt",
        "nul_character",
        id="nul-in-prompt",
    ),
    pytest.param(
        {"input": '{"prompt": "mug", "image_url": "https://a.example/\\u0000"}'},
        "input.image_url",
        "nul_character",
        id="nul-in-image-url",
    ),
    pytest.param({"external_id": '"SKU\\u0000"'}, "external_id", "nul_character", id="nul-in-id"),
    pytest.param(
        {"callback_url": '"https://a.example/\\u0000"'},
        "callback_url",
        "nul_character",
        id="nul-in-callback-url",
    ),
    pytest.param({"metadata": '{"a": "\\u0000"}'}, "metadata", "json_unstorable", id="nul-value"),
    pytest.param(
        {"metadata": '{"a": {"\\u0000": 1}}'}, "metadata", "json_unstorable", id="nul-key"
    ),
    pytest.param({"metadata": '{"a": ["\\udc00"]}'}, "metadata", "json_unstorable", id="surrogate"),
    pytest.param({"metadata": '{"\\ud800": 1}'}, "metadata", "json_unstorable", id="surrogate-key"),
    pytest.param({"metadata": '{"a": NaN}'}, "metadata", "json_unstorable", id="nan"),
    pytest.param({"metadata": '{"a": -Infinity}'}, "metadata", "json_unstorable", id="infinity"),
    pytest.param({"metadata": '{"a": 1e999}'}, "metadata", "json_unstorable", id="overflow"),
    pytest.param(
        {"metadata": '{"a": ' + _nested(MAX_JSON_DEPTH + 1) + "}"},
        "metadata",
        "json_unstorable",
        id="past-the-depth-limit",
    ),
    # Written, then answered with a 500: too deep for the answer to be serialized.
    pytest.param(
        {"metadata": '{"a": ' + _nested(300) + "}"}, "metadata", "json_unstorable", id="deep"
    ),
]


@pytest.mark.parametrize(("raw_fields", "field", "rule"), UNSTORABLE_JOBS)
def test_a_job_postgresql_cannot_store_is_a_422_naming_the_field(
    api_url: str, container: Container, raw_fields: dict[str, str], field: str, rule: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    body = _job_json(**raw_fields).encode()
    answer = httpx.post(f"{api_url}/v1/jobs", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    _assert_error_shape(answer)
    assert {"field": field, "rule": rule} in [
        {"field": f["field"], "rule": f["rule"]} for f in answer.json()["error"]["fields"]
    ]
    assert _rows(container).jobs == 0


def test_metadata_nested_to_the_limit_is_kept(api_url: str) -> None:
    metadata = '{"a": ' + _nested(MAX_JSON_DEPTH) + "}"
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = httpx.post(f"{api_url}/v1/jobs", content=_job_json(metadata=metadata), headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["metadata"] == json.loads(metadata)


@pytest.mark.parametrize(
    ("method", "path", "request_fields", "field"),
    [
        ("GET", "/v1/jobs", {"params": {"provider": "fal\x00"}}, "provider"),
        ("GET", "/v1/jobs", {"params": {"error_code": "\x00"}}, "error_code"),
        ("POST", "/v1/jobs/{job}/cancel", {"json": {"reason": "wrong\x00photo"}}, "reason"),
        ("POST", "/v1/jobs/{job}/retry", {"json": {"reason": "\x00"}}, "reason"),
    ],
)
def test_a_nul_in_a_filter_or_a_reason_is_a_422_naming_it(
    api_url: str,
    container: Container,
    method: str,
    path: str,
    request_fields: dict[str, Any],
    field: str,
) -> None:
    url = api_url + path.format(job=_fresh_job(container, path))
    before = _rows(container)
    answer = httpx.request(method, url, headers=AUTH, **request_fields)
    assert answer.status_code == 422, answer.text
    _assert_error_shape(answer)
    assert [(f["field"], f["rule"]) for f in answer.json()["error"]["fields"]] == [
        (field, "nul_character")
    ]
    assert _rows(container) == before


def test_every_operation_that_takes_input_is_fuzzed(api_schema: OpenApiSchema) -> None:
    taking_input = set()
    for path, methods in api_schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            inputs = [p for p in operation.get("parameters", []) if p["name"] != "authorization"]
            if inputs or "requestBody" in operation:
                taking_input.add(f"{method.upper()} {path}")
    assert taking_input <= set(OPERATIONS)
