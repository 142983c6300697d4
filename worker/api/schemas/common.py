"""What every part of the HTTP API shares: the error body and an ops reason."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.values.storable import StorableText


class ActionRequest(BaseModel):
    """Why an ops action is taken; recorded in the job's history."""

    model_config = ConfigDict(extra="forbid")

    reason: StorableText | None = Field(default=None, max_length=1000)


class FieldError(BaseModel):
    """One broken rule: which field, which rule, and in words."""

    field: str
    rule: str
    message: str


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code``, a message that says what to do, the fields."""

    code: str
    message: str
    fields: list[FieldError] | None = None


class ErrorBody(BaseModel):
    """The body of every 4xx answer."""

    error: ErrorDetail


#: Documented on every route, so the OpenAPI document shows the real error bodies.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or unknown key, or an unverified webhook"},
    404: {"model": ErrorBody, "description": "no such job or batch"},
    409: {"model": ErrorBody, "description": "idempotency conflict or invalid transition"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "a field breaks a rule; `fields` names each"},
}
