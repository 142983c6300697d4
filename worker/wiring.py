"""The one composition root: builds engine, sessions, providers, storage and queue from settings."""

from __future__ import annotations

import functools
import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config
from celery import Celery
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from worker import metrics
from worker.celery_app import CeleryQueue, configure
from worker.celery_app import app as default_celery
from worker.config import Settings, load_settings
from worker.database import Database, TaskQueue
from worker.fetch import Fetcher, outbound_client
from worker.pipeline import leadership
from worker.pipeline.leases import LeaseKeeper
from worker.pipeline.policy import Policy
from worker.pipeline.steps import Pipeline
from worker.pipeline.wakeups import ListeningWakeups, PollingWakeups, Wakeups
from worker.providers.base import Provider
from worker.providers.fal.adapter import FalProvider
from worker.providers.fal.signature import JwksCache
from worker.providers.runflow.adapter import RunflowProvider
from worker.providers.runware.adapter import RunwareProvider
from worker.providers.sources import source_size
from worker.storage.base import Storage
from worker.storage.s3 import S3Storage
from worker.usecases.batches import Batches
from worker.usecases.callbacks import Callbacks, CallbackTargets
from worker.usecases.job_request import SourceUrls
from worker.usecases.jobs import Jobs
from worker.usecases.provider_status import ProviderStatus, provider_status
from worker.usecases.providers import ProviderControls
from worker.usecases.retention import Retention
from worker.values.breaker import BreakerPolicy, Limits
from worker.values.callback_events import CallbackPolicy
from worker.values.pricing import use_prices
from worker.values.retry import RetryPolicy
from worker.values.routing import CapacityPolicy
from worker.values.schedulers import Schedulers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class Container:
    """Everything a process needs, built once from :class:`Settings`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    providers: dict[str, Provider]
    queue: TaskQueue
    celery: Celery
    http: httpx.Client
    #: The client for URLs from outside (outputs, sources, callbacks): see :mod:`worker.fetch`.
    outbound: httpx.Client
    fetcher: Fetcher
    #: Renews the leases this process's submits and finalizes hold.
    leases: LeaseKeeper
    rng: random.Random = field(default_factory=random.Random)

    def jobs(self, actor: str) -> Jobs:
        """The producer and ops use cases, recording ``actor`` on every event."""
        return Jobs(
            self.database(actor),
            self.queue,
            self.providers,
            self.settings.providers,
            self.settings.max_attempts,
            CallbackTargets(
                signing=self.settings.callback_secret is not None, fetcher=self.fetcher
            ),
            SourceUrls(self.fetcher),
            self.settings.routing,
        )

    def batches(self, actor: str) -> Batches:
        """The batch use cases, recording ``actor`` on every event."""
        s = self.settings
        return Batches(
            self.database(actor),
            self.queue,
            self.storage,
            self.jobs(actor),
            max_rows=s.batch_max_rows,
            max_attempts=s.max_attempts,
            url_seconds=s.batch_results_url_seconds,
            lease_seconds=s.lease_seconds,
        )

    def policy(self) -> Policy:
        """The pipeline's timing and capacity, from the settings."""
        s = self.settings
        return Policy(
            lease_seconds=s.lease_seconds,
            poll_seconds=s.poll_seconds,
            poll_max_seconds=s.poll_max_seconds,
            webhook_grace_seconds=s.webhook_grace_seconds,
            limits=Limits(
                order=_dispatch_order(s.providers, self.providers),
                capacity=s.capacity(),
                rates=s.submit_rates(),
                breaker=BreakerPolicy(s.breaker_failures, s.breaker_cooldown_seconds),
                learning=CapacityPolicy(learning=s.capacity_learning, start=s.capacity_start),
            ),
            public_url=s.public_url.rstrip("/") if s.public_url else None,
            retry=RetryPolicy(s.backoff_base_seconds, s.backoff_max_seconds),
            submit_grace_seconds=s.submit_grace_seconds,
            callbacks=self.callback_policy(),
            quality_gate=s.quality_gate,
            latency_aware=s.routing_latency_aware,
            quality=s.quality_thresholds(),
            quality_default=s.quality_policy(),
        )

    def callback_policy(self) -> CallbackPolicy:
        """How producer callbacks are delivered, from the settings."""
        s = self.settings
        return CallbackPolicy(
            timeout_seconds=s.callback_timeout_seconds,
            max_attempts=s.callback_max_attempts,
            retry=RetryPolicy(s.callback_backoff_base_seconds, s.callback_backoff_max_seconds),
            url_seconds=s.presign_get_seconds,
        )

    def callbacks(self, actor: str = "worker") -> Callbacks:
        """Delivering producer callbacks, and the ops use cases over them."""
        secret = self.settings.callback_secret
        return Callbacks(
            self.database(actor),
            self.storage,
            self.fetcher,
            self.outbound,
            Webhook(secret.get_secret_value()) if secret else None,
            self.callback_policy(),
            self.rng,
        )

    def pipeline(self, actor: str = "worker", policy: Policy | None = None) -> Pipeline:
        """The pipeline steps, recording ``actor`` on every event."""
        return Pipeline(
            self.database(actor),
            self.providers,
            self.storage,
            self.fetcher,
            self.queue,
            policy or self.policy(),
            self.leases,
            self.rng,
        )

    def database(self, actor: str) -> Database:
        """Transactions whose events record ``actor``."""
        return Database(self.sessions, actor, metrics.count)

    def provider_status(self, actor: str) -> list[ProviderStatus]:
        """Every provider's breaker, jobs in flight and limits, in dispatch order."""
        return provider_status(self.database(actor), self.policy().limits)

    def retention(self, actor: str) -> Retention:
        """Pruning what is past ``EDITQ_RETAIN_DAYS`` (nothing when it is unset)."""
        s = self.settings
        return Retention(
            self.database(actor), self.storage, s.retain_days, archive=s.retain_archive
        )

    def provider_controls(self, actor: str) -> ProviderControls:
        """Pause, resume and size providers, as ``actor`` (an operator's name)."""
        return ProviderControls(self.database(actor), self.policy().limits)

    def schedulers(self, actor: str) -> Schedulers:
        """Which scheduler leads, and every scheduler running."""
        return leadership.schedulers(self.database(actor), self.settings.scheduler_lease_seconds)

    def wakeups(self) -> Wakeups:
        """The scheduler's dispatch wake-ups: LISTEN on a connection of its own, straight to
        PostgreSQL; fast polling when the only URL is transaction-pooled."""
        s = self.settings
        if s.database_direct_url:
            return ListeningWakeups(s.database_direct_url)
        if s.database_pooling == "transaction":
            return PollingWakeups(s.dispatch_poll_seconds)
        return ListeningWakeups(s.database_url)

    def close(self) -> None:
        """Release connections."""
        self.leases.close()
        self.http.close()
        self.outbound.close()
        self.engine.dispose()


def build(settings: Settings, celery: Celery | None = None) -> Container:
    """Build a :class:`Container`; nothing connects until first used."""
    celery = celery or default_celery
    configure(celery, settings)
    use_prices(settings.prices)
    engine = create_engine(
        settings.database_url,
        pool_pre_ping=True,
        pool_size=10,
        connect_args=connect_args(settings),
    )
    http = httpx.Client(timeout=settings.http_timeout_seconds, follow_redirects=False)
    s3 = _s3_client(settings, settings.s3_endpoint_url)
    public = settings.s3_public_endpoint_url
    s3_public = _s3_client(settings, public) if public else None
    # Provider APIs and the bucket are the configured ones; every other URL (an output, a
    # source image, a producer's callback) is from outside and goes through the pinned client.
    outbound = outbound_client(
        timeout=settings.http_timeout_seconds, allow_private=settings.private_urls_allowed
    )
    fetcher = Fetcher(
        outbound, max_bytes=settings.max_output_bytes, allow_private=settings.private_urls_allowed
    )
    sessions = sessionmaker(engine, expire_on_commit=False)
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=S3Storage(s3, http, settings.s3_bucket, s3_public),
        providers=build_providers(settings, http, fetcher),
        queue=CeleryQueue(celery, settings.queue),
        celery=celery,
        http=http,
        outbound=outbound,
        fetcher=fetcher,
        leases=LeaseKeeper(Database(sessions, "worker", metrics.count), settings.lease_seconds),
    )


def connect_args(settings: Settings) -> dict[str, object]:
    """psycopg's options for ``database_url``: through a transaction pooler, never a
    prepared statement (the next transaction may run on a server connection without it)."""
    return {"prepare_threshold": None} if settings.database_pooling == "transaction" else {}


def build_providers(
    settings: Settings, http: httpx.Client, fetcher: Fetcher
) -> dict[str, Provider]:
    """Every provider adapter, configured from settings (keys may be absent in development)."""
    return {
        "fal": FalProvider(
            http=http,
            base_url=settings.fal_url,
            key=_secret(settings.fal_key),
            jwks=JwksCache(
                http,
                settings.fal_jwks_url,
                min_refetch_seconds=settings.fal_jwks_refetch_seconds,
            ),
        ),
        "runware": RunwareProvider(
            http,
            base_url=settings.runware_url,
            api_key=_secret(settings.runware_api_key),
            webhook_secret=_secret_bytes(settings.webhook_secret),
            image_size=source_size(fetcher),
        ),
        "runflow": RunflowProvider(
            http,
            base_url=settings.runflow_url,
            api_key=_secret(settings.runflow_api_key),
            callback_secret=_secret_bytes(settings.runflow_callback_secret),
        ),
    }


def _s3_client(settings: Settings, endpoint_url: str | None) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=settings.s3_region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def _secret_bytes(value: SecretStr | None) -> bytes | None:
    return value.get_secret_value().encode() if value else None


def _dispatch_order(default: list[str], registered: dict[str, Provider]) -> tuple[str, ...]:
    # The default order first, so a job that could go to several goes to the preferred one.
    return tuple(dict.fromkeys([*default, *registered]))


_first_build = threading.Lock()


@functools.cache
def _built_once() -> Container:
    return build(load_settings())


def process_container() -> Container:
    """This process's container, built on first use (after a worker process forked).

    A thread pool starts its threads' first tasks together; the lock makes them wait for
    the one container instead of each building its own.
    """
    with _first_build:
        return _built_once()


def forget_process_container() -> None:
    """Drop this process's container; the next use builds one from the settings then."""
    _built_once.cache_clear()
