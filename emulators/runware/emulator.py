"""The Runware emulator's use cases: what one ``POST /v1`` of a task array does, apart from HTTP.

The route hands over the raw body; :meth:`RunwareEmulator.handle` answers it with Runware's
envelope, ``{"data": [...]}`` and/or ``{"errors": [...]}``, and an HTTP status: 200 when
nothing failed, otherwise the status of the first error (400 for a refused task, 401
without a key, 404 for an unknown task, 429 and 5xx for injected faults). A poll that
finds failed generations still answers 200: the poll itself worked.
"""

from __future__ import annotations

import json
import math
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from emulators.faults import ConcurrencyGate, FaultConfig, FaultInjector, SubmitFault, patched
from emulators.outbound import outbound_client
from emulators.runware.config import RunwareEmulatorConfig
from emulators.runware.protocol import (
    TaskError,
    authentication_error,
    conflict,
    not_found,
    parse_inference,
    task_uuid_of,
)
from emulators.runware.runner import Runner
from emulators.runware.state import TaskStore
from emulators.runware.webhooks import WebhookSender

#: What :meth:`RunwareEmulator.handle` returns: status, JSON body, extra headers.
Reply = tuple[int, dict[str, Any], dict[str, str]]

_SIGNUP = "Get one at https://my.runware.ai/signup"


@dataclass
class _Answer:
    """What a call's tasks produced so far, and the status its first error carries."""

    data: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def fail(self, error: TaskError, status: int | None = None) -> None:
        if not self.errors:
            self.status = error.status if status is None else status
        self.errors.append(error.wire())


class RunwareEmulator:
    """One running Runware emulator: its settings, tasks, queue and faults."""

    def __init__(self, config: RunwareEmulatorConfig) -> None:
        self.config = config
        self.store = TaskStore()
        self.injector = FaultInjector(config)
        self.gate = ConcurrencyGate(config.concurrency)
        self._client: httpx.AsyncClient | None = None
        self._runner: Runner | None = None

    async def start(self) -> None:
        """Open the HTTP client and start accepting work; call from the serving event loop."""
        self._client = outbound_client(rewrite_hosts=self.config.rewrite_hosts)
        sender = WebhookSender(
            self._client, self.injector, self.store.stats, self.config.webhook_shape
        )
        self._runner = Runner(
            store=self.store,
            gate=self.gate,
            injector=self.injector,
            sender=sender,
            client=self._client,
            config=self.config,
        )

    async def stop(self) -> None:
        """Cancel the work in flight and close the HTTP client."""
        if self._runner is not None:
            await self._runner.close()
        if self._client is not None:
            await self._client.aclose()

    async def handle(self, authorization: str | None, raw: bytes, base_url: str) -> Reply:
        """Answer one ``POST /v1``: a JSON array of tasks, each answered in turn.

        ``authorization`` is the ``Authorization`` header, ``base_url`` where URLs handed
        back start.
        """
        try:
            tasks = _task_list(raw)
            self._authenticate(authorization, tasks)
            if any(task.get("taskType") == "imageInference" for task in tasks):
                self._inject_submit_fault()
        except _Refused as refused:
            self.store.stats.rejected += 1
            return refused.status, {"errors": [refused.error.wire()]}, refused.headers
        answer = _Answer()
        for task in tasks:
            await self._answer(task, base_url, answer)
        body: dict[str, Any] = {"data": answer.data}
        if answer.errors:
            body["errors"] = answer.errors
        return answer.status, body, {}

    async def _answer(self, task: dict[str, Any], base_url: str, answer: _Answer) -> None:
        task_type = task.get("taskType")
        if task_type == "authentication":
            session = {"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())}
            answer.data.append(session)
        elif task_type == "ping":
            answer.data.append({"taskType": "ping", "pong": True})
        elif task_type == "getResponse":
            self._poll(task, answer)
        elif task_type == "imageInference":
            await self._submit(task, base_url, answer)
        else:
            message = f"Task type {task_type!r} is not supported by this emulator."
            answer.fail(TaskError("unsupportedTaskType", message, parameter="taskType"))

    async def _submit(self, raw: Mapping[str, Any], base_url: str, answer: _Answer) -> None:
        """Accept an ``imageInference`` task: ack it (async), or answer when done (sync)."""
        try:
            task_uuid = task_uuid_of(raw, "imageInference")
            if self.store.find(task_uuid) is not None:
                raise conflict(task_uuid)
            spec = parse_inference(raw, task_uuid)
        except TaskError as refused:
            self.store.stats.rejected += 1
            answer.fail(refused)
            return
        accepted = self.store.add(spec, base_url)
        self.gate.join(task_uuid)
        self._started_runner().start(accepted)
        if spec.delivery == "async":
            answer.data.append({"taskType": "imageInference", "taskUUID": task_uuid})
            return
        await accepted.finished.wait()
        answer.data.extend(accepted.results)
        for failed in accepted.errors:
            answer.fail(failed)

    def _poll(self, raw: Mapping[str, Any], answer: _Answer) -> None:
        """``getResponse``: every generation of a task, finished or still processing."""
        try:
            task_uuid = task_uuid_of(raw, "getResponse")
        except TaskError as refused:
            answer.fail(refused)
            return
        found = self.store.find(task_uuid)
        if found is None:
            answer.fail(not_found(task_uuid))
            return
        self.store.stats.polls += 1
        answer.data.extend(found.results)
        answer.data.extend(found.processing_item() for _ in range(found.unfinished))
        for failed in found.errors:
            answer.fail(failed, status=200)

    def update_faults(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Change latency, concurrency or fault rates from now on; returns the new settings."""
        updated = patched(self.injector.config, changes)
        self.injector.config = updated
        self.gate.set_limit(updated.concurrency)
        return updated

    def _authenticate(self, authorization: str | None, tasks: list[dict[str, Any]]) -> None:
        """Find the key (a leading authentication task, or the bearer header) and check it."""
        key = None
        if tasks and tasks[0].get("taskType") == "authentication":
            key = tasks[0].get("apiKey")
        if not key and authorization:
            scheme, _, token = authorization.partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not isinstance(key, str) or not key:
            raise _Refused(authentication_error(f"Missing API key. {_SIGNUP}"))
        expected = self.config.api_key
        if expected is not None and not secrets.compare_digest(key.encode(), expected.encode()):
            raise _Refused(authentication_error(f"Invalid API key. {_SIGNUP}"))

    def _inject_submit_fault(self) -> None:
        fault = self.injector.submit_fault(self.gate.running + self.gate.waiting)
        if fault is SubmitFault.SERVER_ERROR:
            message = "The service is temporarily unavailable."
            raise _Refused(TaskError("serviceUnavailable", message, status=503))
        if fault is SubmitFault.RATE_LIMITED:
            retry_after = str(math.ceil(self.injector.config.retry_after))
            error = TaskError("rateLimitExceeded", "Too many requests, retry later.", status=429)
            raise _Refused(error, {"Retry-After": retry_after})
        if fault is SubmitFault.INVALID:
            message = "Invalid value for 'positivePrompt' parameter (injected fault)."
            raise _Refused(TaskError("invalidPositivePrompt", message, parameter="positivePrompt"))

    def _started_runner(self) -> Runner:
        if self._runner is None:
            raise RuntimeError("the emulator has not been started; serve it with its lifespan on")
        return self._runner


class _Refused(Exception):
    """The whole call is refused before any task runs (no key, an injected fault)."""

    def __init__(self, error: TaskError, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.status = error.status
        self.headers = dict(headers or {})


def _task_list(raw: bytes) -> list[dict[str, Any]]:
    """The tasks in a body, which must be a JSON array of objects."""
    try:
        tasks = json.loads(raw)
    except ValueError:
        tasks = None
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        message = "The request body must be a JSON array of task objects."
        raise _Refused(TaskError("invalidRequestBody", message, task_type="unknown"))
    return tasks
