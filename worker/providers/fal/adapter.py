"""The fal.ai adapter: FLUX.1 Kontext through fal's queue API.

Submit is ``POST {queue}/{model path}``; everything after it follows the ``status_url``,
``response_url`` and ``cancel_url`` fal returns, never URLs we build: fal's own URLs
drop the model's subpath (``fal-ai/flux-pro/requests/...``, no ``/kontext``). Status
answers 202 while ``IN_QUEUE``/``IN_PROGRESS`` and 200 when ``COMPLETED``; a completed
request failed when its status carries ``error``. Webhooks are signed with Ed25519
(:mod:`worker.providers.fal.signature`); errors are classified in
:mod:`worker.providers.fal.errors`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from worker import faults
from worker.errors import WEBHOOK_MALFORMED as MALFORMED
from worker.errors import WebhookRejected
from worker.faults import ErrorKind, Fault
from worker.providers.base import (
    AttemptRef,
    Completed,
    Failed,
    Outcome,
    Pending,
    ProviderCallError,
    Submission,
    Unsupported,
    WebhookEvent,
)
from worker.providers.common import json_object, kontext_arguments, transport_fault
from worker.providers.fal.errors import classify_fal_error
from worker.providers.fal.payloads import (
    attempt_id_from_query,
    fault_from_error_text,
    parse_images,
    webhook_outcome,
)
from worker.providers.fal.signature import JwksCache, verify_fal_webhook
from worker.values.canonical import EditInput

#: fal's queue API.
FAL_QUEUE_URL = "https://queue.fal.run"

#: Canonical model name -> fal application path.
MODEL_PATHS: Mapping[str, str] = {
    "flux-kontext-pro": "fal-ai/flux-pro/kontext",
    "flux-kontext-max": "fal-ai/flux-pro/kontext/max",
}

#: Canonical fields fal takes under the same name; anything else never reaches fal.
_HANDLES = ("status_url", "response_url", "cancel_url")
_CANCEL_IS_MOOT = frozenset({"ALREADY_COMPLETED", "NOT_FOUND"})


#: fal and Runflow take the same Kontext fields.
fal_arguments = kontext_arguments


class FalProvider:
    """fal.ai's hosted FLUX.1 Kontext [pro] and [max], through its queue.

    :param http: the client every call goes through (its timeouts bound each call).
    :param jwks: fal's webhook signing keys.
    :param base_url: fal's queue API; an emulator's URL in development and tests.
    :param key: fal API key, sent as ``Authorization: Key <key>``; ``None`` sends none.
    :param clock: Unix time in seconds, for webhook timestamps and ``Retry-After`` dates.
    """

    name = "fal"
    uploads_directly = False
    idempotent_submit = False

    def __init__(
        self,
        http: httpx.Client,
        *,
        jwks: JwksCache,
        base_url: str = FAL_QUEUE_URL,
        key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._jwks = jwks
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Key {key}"} if key else {}
        self._clock = clock

    def unsupported(self, model: str, edit: EditInput) -> list[Unsupported]:
        """fal takes every canonical field; only the model must be one fal serves."""
        if model not in MODEL_PATHS:
            return [Unsupported("model", f"fal has no {model}")]
        return []

    def submit(
        self,
        model: str,
        edit: EditInput,
        attempt_id: uuid.UUID,
        webhook_url: str | None,
        upload_url: str | None = None,
    ) -> Submission:
        """Queue one attempt at fal; returns its request id and the URLs fal gave for it.

        The attempt id travels in ``webhook_url`` (fal has no field for a client id).
        A transport error here is classified retryable, but fal may have accepted the
        request before the connection failed: the core treats submit failures carefully
        (the webhook or a later lookup may still report the attempt) rather than
        resubmitting blindly.
        """
        path = MODEL_PATHS.get(model)
        if path is None:
            raise ProviderCallError(
                Fault(ErrorKind.TERMINAL, faults.MODEL_UNSUPPORTED, f"fal has no model {model!r}")
            )
        params = {"fal_webhook": webhook_url} if webhook_url else None
        response = self._call(
            "POST", f"{self._base_url}/{path}", params=params, json=fal_arguments(edit)
        )
        if response.is_error:
            raise ProviderCallError(self._classify(response))
        body = json_object(response.content)
        request_id = body.get("request_id") if body else None
        handles = {name: body.get(name) for name in _HANDLES} if body else {}
        if not isinstance(request_id, str) or not all(
            isinstance(url, str) for url in handles.values()
        ):
            raise ProviderCallError(
                _invalid(f"submit answer lacks request_id or URLs: {response.text[:200]}")
            )
        return Submission(request_id=request_id, data=handles)

    def status(self, ref: AttemptRef) -> Outcome:
        """Where an attempt is at fal; its outputs (or failure) once it has completed.

        Raises :class:`ProviderCallError` when fal could not be asked; a failure fal
        reports about the attempt itself is returned as :class:`Failed`.
        """
        status_url = ref.data.get("status_url")
        if ref.request_id is None or not isinstance(status_url, str):
            return Failed(_lost("no fal request was recorded for this attempt"))
        response = self._call("GET", status_url)
        if response.status_code == 404:
            return Failed(_lost(f"fal does not know request {ref.request_id} any more"))
        if response.is_error:
            raise ProviderCallError(self._classify(response))
        body = json_object(response.content) or {}
        state = body.get("status")
        if state == "IN_QUEUE":
            position = body.get("queue_position")
            return Pending(position=position if isinstance(position, int) else None)
        if state == "IN_PROGRESS":
            return Pending()
        if state == "COMPLETED":
            return self._finished(ref, body)
        raise ProviderCallError(_invalid(f"unknown fal status {state!r}"))

    def _finished(self, ref: AttemptRef, status_body: Mapping[str, Any]) -> Outcome:
        response_url = ref.data.get("response_url")
        if not isinstance(response_url, str):
            return Failed(_lost("no fal response_url was recorded for this attempt"))
        result = self._call("GET", response_url)
        failed = bool(status_body.get("error"))
        if result.status_code == 429 or (result.status_code >= 500 and not failed):
            # A throttled or broken read says nothing about a request fal says succeeded;
            # fal keeps the result for a while, so ask again rather than pay for a rerun.
            raise ProviderCallError(self._classify(result))
        if result.is_error and result.status_code != 404:
            # fal answers a failed request's result with the model's own error and status.
            return Failed(self._classify(result))
        if failed:
            return Failed(fault_from_error_text(status_body))
        if result.status_code == 404:
            return Failed(_lost("fal no longer keeps this result (1 h, 6 min above 10 KB)"))
        outputs = parse_images(json_object(result.content))
        if outputs is None:
            return Failed(_invalid(f"fal's result has no images: {result.text[:200]}"))
        return Completed(outputs=outputs)

    def webhook_url(self, public_url: str, attempt_id: uuid.UUID) -> str:
        """Our callback URL for one attempt; fal posts to it as given, attempt id included."""
        return f"{public_url.rstrip('/')}/v1/webhooks/fal?attempt={attempt_id}"

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> WebhookEvent:
        """Verify fal's signature on the raw body, then read the callback.

        The ``attempt`` query parameter is not covered by fal's signature; the request id
        in the body is, so the core should match the two against the attempt it holds.
        """
        verify_fal_webhook(headers, body, self._jwks, self._clock())
        attempt_id = attempt_id_from_query(query)
        document = json_object(body)
        if document is None:
            raise WebhookRejected(MALFORMED, "the callback body is not a JSON object")
        request_id = document.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise WebhookRejected(MALFORMED, "the callback has no request_id")
        return WebhookEvent(
            attempt_id=attempt_id, request_id=request_id, outcome=webhook_outcome(document)
        )

    def cancel(self, ref: AttemptRef) -> None:
        """Ask fal to drop a queued attempt or stop a running one, best effort.

        A request fal already finished or forgot needs no cancelling and is not an error.
        Raises :class:`ProviderCallError` when fal could not be asked.
        """
        cancel_url = ref.data.get("cancel_url")
        if not isinstance(cancel_url, str):
            return
        response = self._call("PUT", cancel_url)
        if response.is_success or response.status_code == 404:
            return
        body = json_object(response.content)
        if body is not None and body.get("status") in _CANCEL_IS_MOOT:
            return
        raise ProviderCallError(self._classify(response))

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderCallError(transport_fault(exc)) from exc

    def _classify(self, response: httpx.Response) -> Fault:
        return classify_fal_error(
            response.status_code, response.headers, response.content, now=self._clock()
        )


def _lost(message: str) -> Fault:
    return Fault(ErrorKind.RETRYABLE, faults.PROVIDER_REQUEST_LOST, message)


def _invalid(message: str) -> Fault:
    return Fault(ErrorKind.RETRYABLE, faults.PROVIDER_RESPONSE_INVALID, message)
