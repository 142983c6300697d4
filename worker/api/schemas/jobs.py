"""Request bodies of ``/v1/jobs`` (the OpenAPI document is generated from them); the
responses are :mod:`worker.api.schemas.job_out`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.usecases.job_request import JobRequest
from worker.values.callback_events import OptionalJobEvent
from worker.values.canonical import EditInput, ModelName, ProviderOrder
from worker.values.chain import MAX_STEPS, StepIn
from worker.values.quality_policy import DEFAULT_MAX_RETRIES, OnFailure, QualityPolicy
from worker.values.routing import Routing
from worker.values.storable import StorableText, storable_json

MAX_METADATA_BYTES = 16 * 1024


class QualityIn(BaseModel):
    """What a failed quality check does to this job (the settings' default when left out)."""

    model_config = ConfigDict(extra="forbid")

    on_failure: OnFailure = Field(
        description="by_check: each check's own default (moderated and blank fail; "
        "unchanged, wrong size, wrong format and undecodable are tried once more on the "
        "next provider); fail; retry; accept (succeed, with the failed check as a flag)"
    )
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=10)

    def policy(self) -> QualityPolicy:
        """As the use cases take it."""
        return QualityPolicy(self.on_failure, self.max_retries)


class JobCreate(BaseModel):
    """A request for one edit job."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: ModelName = "flux-kontext-pro"
    input: EditInput
    providers: ProviderOrder | None = None
    external_id: StorableText | None = Field(default=None, min_length=1, max_length=256)
    callback_url: StorableText | None = Field(
        default=None, max_length=2048, pattern=r"^https?://\S+$"
    )
    priority: int = Field(default=0, ge=-100, le=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    quality: QualityIn | None = None
    steps: list[StepIn] = Field(
        default_factory=list,
        max_length=MAX_STEPS - 1,
        description="The steps after the first (which is `input`): each edits an output of "
        "the step before (`use_output`, default 0), with its own `prompt` and any canonical "
        "parameter that changes (the others carry over), and optionally its own `providers`.",
    )
    routing: Routing | None = Field(
        default=None,
        description="How the providers share the job: spread (fill every listed provider, "
        "in the listed order; the default), failover (only when a breaker opens or an "
        "attempt fails) or cheapest (the lowest list price with room).",
    )
    callback_events: list[OptionalJobEvent] = Field(
        default_factory=list,
        description="Events sent to `callback_url` besides the terminal ones "
        "(`job.step_succeeded`: each step of a chain but its last, as it is stored).",
    )

    def to_request(self) -> JobRequest:
        """The request as the use cases take it."""
        return JobRequest(
            model=self.model,
            input=self.input,
            providers=tuple(self.providers or ()),
            external_id=self.external_id,
            callback_url=self.callback_url,
            priority=self.priority,
            metadata=self.metadata,
            quality=None if self.quality is None else self.quality.policy(),
            steps=tuple(self.steps),
            callback_events=tuple(dict.fromkeys(self.callback_events)),
            routing=self.routing,
        )

    @field_validator("metadata")
    @classmethod
    def _storable_small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        storable_json(value)
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return value


class RetryFilter(BaseModel):
    """Which failed or canceled jobs to retry, why, and whether only to look."""

    model_config = ConfigDict(extra="forbid")

    state: list[Literal["failed", "canceled"]] = Field(default_factory=list)
    batch_id: uuid.UUID | None = None
    provider: StorableText | None = Field(default=None, max_length=64)
    error_code: StorableText | None = Field(default=None, max_length=128)
    since: datetime | None = None
    until: datetime | None = None
    #: Kept on every retried job's history; an ops action always says why.
    reason: StorableText = Field(min_length=1, max_length=1000)
    dry_run: bool = False
