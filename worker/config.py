"""Settings, read once from the environment (and a ``.env`` file), prefix ``EDITQ_``.

Nothing reads the environment at import time: :func:`load_settings` is called by the
composition root (``wiring.py``) and the CLI, and the result is passed along.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.values.pricing import price_key
from worker.values.quality import Thresholds
from worker.values.quality_policy import DEFAULT_MAX_RETRIES, OnFailure, QualityPolicy
from worker.values.routing import DEFAULT_ROUTING, Routing

KNOWN_PROVIDERS = ("fal", "runware", "runflow")
_GATE = Thresholds()
CALLBACK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything editq's processes read from their environment."""

    # Inputs stay out of error messages: several settings are secrets.
    model_config = SettingsConfigDict(
        env_prefix="EDITQ_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    #: ``development`` allows loopback/private URLs and verbose errors; anything else is strict.
    env: Literal["development", "production"] = "production"
    database_url: str = "postgresql+psycopg://editq:editq@127.0.0.1:5432/editq"
    #: How ``database_url`` is pooled: ``session`` (PostgreSQL itself, or a pooler in
    #: session mode) or ``transaction`` (PgBouncer's transaction pooling: no prepared
    #: statements, and no LISTEN through it).
    database_pooling: Literal["session", "transaction"] = "session"
    #: A connection straight to PostgreSQL, past any pooler: the scheduler LISTENs on it
    #: for its wake-ups, and migrations run on it. Unset: ``database_url``, or fast polling
    #: when that is transaction-pooled.
    database_direct_url: str | None = None
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: Celery queue the tasks travel on; tests use their own.
    queue: str = "editq"
    s3_endpoint_url: str | None = None
    #: Where the presigned URLs editq hands out point (API answers, result files,
    #: callbacks, providers), when that is not where editq itself reaches S3: a compose
    #: stack's ``http://minio:9000`` is not reachable from the host. Unset: the same.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "editq"
    s3_region: str = "us-east-1"
    #: Where providers reach our webhooks. Without it, running jobs are polled.
    public_url: str | None = None
    #: Producer API keys (comma-separated); compared in constant time.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: The ops console's operators, ``name:role:argon2-hash`` separated by ``;`` (none: the
    #: console is off), and the key its session cookies are signed with.
    console_operators: str = ""
    console_secret: SecretStr | None = None
    #: Default provider order for a job that names none.
    providers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["fal"])
    allow_private_urls: bool = False

    fal_url: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    fal_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FAL_KEY", "EDITQ_FAL_KEY")
    )
    #: A webhook whose key is not in the cached JWKS makes editq fetch the JWKS again (fal
    #: rotated its key), at most this often, so forged signatures cannot cause a fetch storm.
    fal_jwks_refetch_seconds: float = Field(default=60.0, ge=0)
    fal_max_in_flight: int = Field(default=40, ge=1)
    #: Submits a second at most (unset: no limit), for each provider.
    fal_submit_rate: float | None = Field(default=None, gt=0)

    runware_url: str = "https://api.runware.ai/v1"
    runware_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("RUNWARE_API_KEY", "EDITQ_RUNWARE_API_KEY")
    )
    runware_max_in_flight: int = Field(default=40, ge=1)
    runware_submit_rate: float | None = Field(default=None, gt=0)

    runflow_url: str = "https://api.runflow.io"
    runflow_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("RUNFLOW_API_KEY", "EDITQ_RUNFLOW_API_KEY")
    )
    #: The ``whsec_...`` secret Runflow signs callbacks with; without it they are refused.
    runflow_callback_secret: SecretStr | None = None
    runflow_max_in_flight: int = Field(default=40, ge=1)
    runflow_submit_rate: float | None = Field(default=None, gt=0)

    #: Secret behind the per-attempt tokens in Runware callback URLs (Runware does not sign
    #: its callbacks). Without it, Runware jobs are polled instead.
    webhook_secret: SecretStr | None = None
    #: How a job's providers share it when it does not say: spread, failover or cheapest.
    routing: Routing = DEFAULT_ROUTING
    #: Among providers with room, a slower one leaves to faster full ones the jobs they
    #: would finish first (off: every provider with room takes what it can).
    routing_latency_aware: bool = True
    #: Learn each provider's in-flight limit from its answers, within its MAX_IN_FLIGHT.
    capacity_learning: bool = True
    #: Where a provider's learned limit starts (its MAX_IN_FLIGHT, when lower).
    capacity_start: int = Field(default=20, ge=1)
    #: List prices that differ from the built-in ones, USD per image:
    #: ``{"runware:flux-kontext-pro": "0.035"}``.
    prices: dict[str, Decimal] = Field(default_factory=dict)
    #: Provider failures in a row that open its circuit breaker, and how long it stays open.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)

    #: How long a submitting or finalizing job's lease lasts without being renewed. Live
    #: work renews it every third of that, so a dead worker's job is repaired within one
    #: lease, while the provider's output URLs still work.
    lease_seconds: float = Field(default=15.0, gt=0)
    #: First poll delay for a running job with no webhook; doubles up to ``poll_max_seconds``.
    poll_seconds: float = Field(default=1.0, gt=0)
    poll_max_seconds: float = Field(default=15.0, gt=0)
    #: How long an attempt whose worker vanished mid-call waits for the provider's callback
    #: (which carries our attempt id) before it is given up and the job sent again.
    submit_grace_seconds: float = Field(default=900.0, ge=0)
    #: With webhooks, a running job is still polled after this long as a safety net.
    webhook_grace_seconds: float = Field(default=120.0, gt=0)
    #: Interval of the scheduler's tick (dispatch, poll, reconcile).
    tick_seconds: float = Field(default=1.0, gt=0)
    #: How long the leading scheduler's lease lasts unless renewed (it renews every tick):
    #: when it dies, a standby takes over within this and one tick.
    scheduler_lease_seconds: float = Field(default=5.0, gt=0)
    #: Without LISTEN (transaction pooling and no direct URL), the scheduler runs a
    #: dispatch round this often between ticks.
    dispatch_poll_seconds: float = Field(default=0.25, gt=0)
    #: Finished jobs completed more than this many days ago are deleted (unset: kept for
    #: ever); archived to the bucket first with ``retain_archive``.
    retain_days: float | None = Field(default=None, gt=0)
    retain_archive: bool = False
    #: How often the scheduler prunes, when ``retain_days`` is set.
    prune_interval_seconds: float = Field(default=600.0, gt=0)
    #: Where the worker and the scheduler serve their Prometheus metrics (0: nowhere).
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    scheduler_metrics_port: int = Field(default=9102, ge=0, le=65535)
    max_attempts: int = Field(default=5, ge=1, le=50)
    #: Backoff base and cap for retryable failures (full jitter).
    backoff_base_seconds: float = Field(default=2.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    #: Lifetime of presigned GET URLs in API answers.
    presign_get_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    #: Largest output image the worker will download.
    max_output_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    http_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Largest request body the API accepts (a job with a data-URI image is the largest).
    max_request_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    #: Most rows, and most bytes, of one batch file.
    batch_max_rows: int = Field(default=100_000, ge=1)
    batch_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    #: Lifetime of the presigned URLs in a batch's ``results.jsonl`` (SigV4 allows 7 days).
    batch_results_url_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)

    #: The Standard Webhooks secret (``whsec_`` and base64 of 24 to 64 random bytes) producer
    #: callbacks are signed with. Without it a job or batch naming a ``callback_url`` is refused.
    callback_secret: SecretStr | None = None
    #: How long one callback delivery may take before it counts as a failed try.
    callback_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Tries of one callback before it is given up (``editq callbacks redeliver`` starts over).
    callback_max_attempts: int = Field(default=8, ge=1, le=50)
    #: Backoff base and cap between tries of a callback (exponential, full jitter).
    callback_backoff_base_seconds: float = Field(default=30.0, gt=0)
    callback_backoff_max_seconds: float = Field(default=3600.0, gt=0)

    #: Check every output before its job succeeds (``bench/quality.py`` measures the checks).
    quality_gate: bool = True
    #: What a failed check does to a job that does not say: by_check, fail, retry or accept.
    quality_on_failure: OnFailure = "by_check"
    #: Attempts a job may spend on outputs that failed a check, beyond its first.
    quality_max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=10)
    #: The checks' thresholds; the README gives the measurements behind each default.
    quality_blank_stddev: float = Field(default=_GATE.blank_stddev, ge=0, le=255)
    quality_unchanged_distance: float = Field(default=_GATE.unchanged_distance, ge=0, le=1)
    quality_unchanged_color: float = Field(default=_GATE.unchanged_color, ge=0, le=1)
    quality_lost_distance: float = Field(default=_GATE.lost_distance, ge=0, le=1)
    quality_size_tolerance: float = Field(default=_GATE.size_tolerance, ge=0, le=1)

    @field_validator("prices")
    @classmethod
    def _price_keys(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for key, price in value.items():
            price_key(key)
            if price < 0:
                raise ValueError(f"{key}: a price must not be negative")
        return value

    @field_validator("scheduler_lease_seconds")
    @classmethod
    def _lease_outlasts_ticks(cls, value: float, info: ValidationInfo) -> float:
        tick = info.data.get("tick_seconds")
        if tick is not None and value < 2 * tick:
            raise ValueError(
                f"must be at least twice EDITQ_TICK_SECONDS ({tick:g}), or the leading "
                "scheduler would lose its lease between two renewals"
            )
        return value

    @field_validator("callback_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_callback_secret(value.get_secret_value())
        return value

    @field_validator("api_keys", "providers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KNOWN_PROVIDERS))
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; known: {list(KNOWN_PROVIDERS)}")
        if not value:
            raise ValueError("at least one provider is needed")
        return value

    def direct_url(self) -> str:
        """Where to reach PostgreSQL itself, past any pooler (LISTEN, migrations)."""
        return self.database_direct_url or self.database_url

    def capacity(self) -> dict[str, int]:
        """Each provider's most jobs in flight."""
        return {
            "fal": self.fal_max_in_flight,
            "runware": self.runware_max_in_flight,
            "runflow": self.runflow_max_in_flight,
        }

    def submit_rates(self) -> dict[str, float | None]:
        """Each provider's most submits a second (None: no limit)."""
        return {
            "fal": self.fal_submit_rate,
            "runware": self.runware_submit_rate,
            "runflow": self.runflow_submit_rate,
        }

    def quality_thresholds(self) -> Thresholds:
        """The quality checks' thresholds."""
        return Thresholds(
            blank_stddev=self.quality_blank_stddev,
            unchanged_distance=self.quality_unchanged_distance,
            unchanged_color=self.quality_unchanged_color,
            lost_distance=self.quality_lost_distance,
            size_tolerance=self.quality_size_tolerance,
        )

    def quality_policy(self) -> QualityPolicy:
        """What a failed check does to a job that does not say."""
        return QualityPolicy(self.quality_on_failure, self.quality_max_retries)

    @property
    def development(self) -> bool:
        """Whether development conveniences (private URLs) are on."""
        return self.env == "development"

    @property
    def private_urls_allowed(self) -> bool:
        """Whether the worker may fetch from loopback and private addresses."""
        return self.allow_private_urls or self.development


def check_callback_secret(secret: str) -> None:
    """Raise ValueError unless ``secret`` is a Standard Webhooks secret (never echoing it)."""
    body = secret.removeprefix(CALLBACK_SECRET_PREFIX)
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith(CALLBACK_SECRET_PREFIX) or not 24 <= len(key) <= 64:
        raise ValueError(
            "must be whsec_ followed by base64 of 24 to 64 random bytes; make one with "
            "`editq callbacks new-secret`"
        )


def load_settings() -> Settings:
    """Read the settings from the environment and ``.env``."""
    return Settings()
