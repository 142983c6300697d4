"""What a new user meets at the API's door: errors that say where and what, nothing written."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from emulators.server import run_in_thread
from models.tables import Job
from tests.factories import job_body
from tests.integration.conftest import API_KEY
from worker.api.app import create_app
from worker.wiring import Container, build

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@pytest.fixture
def client(container: Container) -> Iterator[httpx.Client]:
    with run_in_thread(create_app(container)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def test_malformed_json_names_the_line_and_column(
    client: httpx.Client, container: Container
) -> None:
    body = b'{\n  "input": {\n    "prompt": "a beach",\n    "image_url": oops\n  }\n}'
    answer = client.post("/v1/jobs", content=body, headers=AUTH)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert "line 4, column 18" in error["message"]
    assert error["fields"][0]["field"] == "body" and error["fields"][0]["rule"] == "json_invalid"
    with container.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/jobs/retry", {"error_code": "provider_unavailible", "reason": "outage"}),
        ("GET", "/v1/jobs?error_code=provider_unavailible", None),
    ],
    ids=["retry", "list"],
)
def test_an_unknown_error_code_in_a_filter_is_refused_naming_the_known_ones(
    client: httpx.Client, method: str, path: str, payload: dict[str, str] | None
) -> None:
    answer = client.request(method, path, json=payload, headers=AUTH)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "unknown_error_code"
    assert error["fields"][0]["field"] == "error_code"
    assert "provider_unavailable" in error["message"] and "output_unavailable" in error["message"]


@pytest.fixture
def production_client(container: Container) -> Iterator[httpx.Client]:
    """The API as it runs outside development: private addresses refused."""
    settings = container.settings.model_copy(update={"env": "production"})
    strict = build(settings)
    assert not strict.settings.private_urls_allowed
    try:
        with (
            run_in_thread(create_app(strict)) as server,
            httpx.Client(base_url=server.url) as c,
        ):
            yield c
    finally:
        strict.close()


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5/a.jpg", "http://127.0.0.1:8080/a.jpg", "http://169.254.169.254/x"]
)
def test_a_private_image_url_is_refused_at_creation_outside_development(
    production_client: httpx.Client, container: Container, url: str
) -> None:
    answer = production_client.post(
        "/v1/jobs", json=job_body(input={"image_url": url}), headers=AUTH
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "image_url_refused"
    assert error["fields"][0]["field"] == "input.image_url"
    with container.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Job)) == 0


def test_a_batch_row_with_a_private_image_url_is_rejected_by_line(
    production_client: httpx.Client,
) -> None:
    rows = (
        "external_id,image_url,prompt\n"
        "SKU-1,https://cdn.example.com/a.jpg,a beach\n"
        "SKU-2,http://10.0.0.5/b.jpg,a beach\n"
    )
    answer = production_client.post(
        "/v1/batches", content=rows, headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert answer.status_code == 201, answer.text
    (rejected,) = answer.json()["rejected_rows"]
    assert (rejected["line"], rejected["field"], rejected["rule"]) == (
        3,
        "image_url",
        "image_url_refused",
    )
