"""The Runflow emulator's use cases: what creating, reading and calling back runs do, apart
from HTTP.

Routes parse the request, call one method here and format what it returns. A refusal is
raised as :class:`RequestRejectedError`, which carries Runflow's status code, error envelope
and headers.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any

import httpx

from emulators.faults import ConcurrencyGate, FaultConfig, FaultInjector, SubmitFault, patched
from emulators.outbound import outbound_client
from emulators.runflow.callbacks import CallbackDelivery, CallbackSender
from emulators.runflow.config import RunflowEmulatorConfig
from emulators.runflow.files import OutputStore
from emulators.runflow.protocol import (
    InvalidRequestError,
    error_body,
    field_error,
    parse_run_request,
)
from emulators.runflow.runner import Runner
from emulators.runflow.signing import CallbackSecret, SecretRing
from emulators.runflow.state import Run, RunStore


class RequestRejectedError(Exception):
    """The emulator refused the call; answer ``status_code`` with ``body`` and ``headers``."""

    def __init__(
        self, status_code: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body.get("message"))
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})


def run_not_found(run_id: str) -> RequestRejectedError:
    """The 404 for a run id the emulator never issued."""
    return RequestRejectedError(404, error_body("RUN_NOT_FOUND", f"Run {run_id[:64]} not found"))


class RunflowEmulator:
    """One running Runflow emulator: its settings, runs, queue, faults and signing secrets."""

    def __init__(self, config: RunflowEmulatorConfig) -> None:
        self.config = config
        self.store = RunStore()
        self.files = OutputStore(config.result_ttl, config.url_ttl)
        self.injector = FaultInjector(config)
        self.gate = ConcurrencyGate(config.concurrency)
        self.secrets = SecretRing(config.callback_secret)
        self._client: httpx.AsyncClient | None = None
        self._callbacks: CallbackSender | None = None
        self._runner: Runner | None = None

    async def start(self) -> None:
        """Open the HTTP clients and start accepting work; call from the serving event loop."""
        self._client = outbound_client(rewrite_hosts=self.config.rewrite_hosts)
        self._callbacks = CallbackSender(self.injector, self.secrets, self.store.stats)
        self._runner = Runner(
            store=self.store,
            gate=self.gate,
            injector=self.injector,
            files=self.files,
            callbacks=self._callbacks,
            client=self._client,
        )

    async def stop(self) -> None:
        """Cancel the work in flight and close the HTTP clients."""
        if self._runner is not None:
            await self._runner.close()
        if self._callbacks is not None:
            await self._callbacks.aclose()
        if self._client is not None:
            await self._client.aclose()

    def check_key(self, authorization: str | None) -> None:
        """Refuse a call without a usable ``Authorization: Bearer <key>`` header (401)."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise RequestRejectedError(
                401, error_body("UNAUTHORIZED", "Missing or invalid bearer token")
            )
        expected = self.config.api_key
        if expected is not None and not secrets.compare_digest(key.strip(), expected):
            raise RequestRejectedError(
                401, error_body("UNAUTHORIZED", "Invalid API key or the key is not active")
            )

    def create_run(self, authorization: str | None, body: bytes, base_url: str) -> Run:
        """Accept a run into the queue, or raise :class:`RequestRejectedError` (counted).

        ``base_url`` is where the URLs handed back for the run start.
        """
        try:
            self.check_key(authorization)
            self._inject_submit_fault()
            request = parse_run_request(body)
        except InvalidRequestError as exc:
            self.store.stats.rejected += 1
            raise RequestRejectedError(exc.status_code, exc.body) from exc
        except RequestRejectedError:
            self.store.stats.rejected += 1
            raise
        run = self.store.add(request, base_url=base_url)
        self.gate.join(run.run_id)
        runner, _ = self._started()
        runner.start(run)
        return run

    def find_run(self, authorization: str | None, run_id: str) -> Run:
        """The run ``run_id``, for a caller with a key; 404 ``RUN_NOT_FOUND`` otherwise."""
        self.check_key(authorization)
        run = self.store.find(run_id)
        if run is None:
            raise run_not_found(run_id)
        return run

    def run_object(self, run: Run) -> dict[str, Any]:
        """The run as ``GET /v1/runs/{id}`` answers it, its output URLs signed from now."""
        body = run.wire()
        output = body.get("output")
        if isinstance(output, dict) and isinstance(output.get("image_urls"), list):
            urls = [self.files.resign(str(url)) for url in output["image_urls"]]
            body["output"] = {**output, "image_urls": urls}
        return body

    def redeliver(self, authorization: str | None, run_id: str) -> CallbackDelivery:
        """Send a new callback for an ended run, built from its current state."""
        run = self.find_run(authorization, run_id)
        if not run.state.is_terminal:
            raise RequestRejectedError(
                409, error_body("CONFLICT", "The run has not reached a terminal state yet")
            )
        if run.request.callback_url is None:
            raise RequestRejectedError(
                422,
                error_body(
                    "VALIDATION_ERROR",
                    "The run has no callback_url",
                    [field_error("callback_url", "The run was created without a callback_url")],
                ),
            )
        _, callbacks = self._started()
        delivery = callbacks.prepare(run, automatic=False)
        callbacks.start(delivery)
        self.store.stats.redeliveries += 1
        return delivery

    def rotate_secret(self, authorization: str | None, label: str | None) -> CallbackSecret:
        """Issue a new callback signing secret; it signs every callback created from now on."""
        self.check_key(authorization)
        self.store.stats.secrets_created += 1
        return self.secrets.rotate(label)

    def update_faults(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Change latency, concurrency or fault rates from now on; returns the new settings."""
        updated = patched(self.injector.config, changes)
        self.injector.config = updated
        self.gate.set_limit(updated.concurrency)
        return updated

    def _inject_submit_fault(self) -> None:
        fault = self.injector.submit_fault(self.gate.running + self.gate.waiting)
        if fault is SubmitFault.SERVER_ERROR:
            raise RequestRejectedError(
                503,
                error_body("MODEL_UNAVAILABLE", "The model provider is unavailable; retry later"),
            )
        if fault is SubmitFault.RATE_LIMITED:
            raise RequestRejectedError(
                429,
                error_body("RATE_LIMITED", "Rate limit exceeded: too many requests"),
                {"Retry-After": str(math.ceil(self.injector.config.retry_after))},
            )
        if fault is SubmitFault.INVALID:
            raise RequestRejectedError(
                422,
                error_body(
                    "VALIDATION_ERROR",
                    "Request validation failed",
                    [field_error("input", "Input rejected by the model (injected fault)")],
                ),
            )

    def _started(self) -> tuple[Runner, CallbackSender]:
        if self._runner is None or self._callbacks is None:
            raise RuntimeError("the emulator has not been started; serve it with its lifespan on")
        return self._runner, self._callbacks
