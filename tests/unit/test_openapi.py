"""The OpenAPI document reads well to a person at /docs and to a client generator."""

from __future__ import annotations

from typing import Any

import pytest

from worker.api.app import create_app
from worker.config import Settings
from worker.wiring import build


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Building the app connects to nothing, so the document needs no server.
    container = build(Settings(api_keys="k"))
    try:
        return create_app(container).openapi()
    finally:
        container.close()


def test_the_producer_key_is_a_declared_bearer_scheme_that_docs_can_send(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["producerKey"]["type"] == "http"
    assert schemes["producerKey"]["scheme"] == "bearer"
    assert document["paths"]["/v1/jobs"]["post"]["security"] == [{"producerKey": []}]
    assert document["paths"]["/v1/batches/{batch_id}"]["get"]["security"] == [{"producerKey": []}]


def test_operation_ids_are_readable_and_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert {"create_job", "get_job", "list_jobs", "retry_jobs", "create_batch"} <= set(ids)
    assert all(op.isidentifier() and "__" not in op for op in ids)


def test_readiness_documents_its_503(document: dict[str, Any]) -> None:
    responses = document["paths"]["/readyz"]["get"]["responses"]
    assert "503" in responses
    assert "checks" in responses["503"]["content"]["application/json"]["example"]
