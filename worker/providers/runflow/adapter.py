"""The Runflow adapter: FLUX.1 Kontext [pro] through Runflow's run API.

Submit is ``POST {base}/v1/models/black-forest-labs/flux-pro/kontext/runs`` with
``{"input", "callback_url", "client_ref", "metadata"}``; Runflow answers at once with a run
object (a UUIDv7 ``id``, state ``queued``). ``GET {base}/v1/runs/{id}`` then reports the run
as it moves ``queued -> dispatching -> running -> succeeded | failed``, with its outputs as
presigned, expiring ``output.image_urls``. Our attempt id travels as ``client_ref`` and as
``metadata.editq_attempt``, which every callback echoes inside its signed body.

Callbacks are signed with HMAC-SHA256 (:mod:`worker.providers.runflow.signature`); errors
are classified in :mod:`worker.providers.runflow.errors`, which carries the tables.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from worker import faults
from worker.errors import WEBHOOK_MALFORMED as MALFORMED
from worker.errors import WebhookRejected
from worker.faults import ErrorKind, Fault
from worker.providers.base import (
    AttemptRef,
    Failed,
    Outcome,
    ProviderCallError,
    Submission,
    Unsupported,
    WebhookEvent,
)
from worker.providers.common import json_object, kontext_arguments, transport_fault
from worker.providers.runflow.errors import classify_runflow_error, describe_error
from worker.providers.runflow.payloads import (
    ATTEMPT_KEY,
    attempt_from_metadata,
    callback_outcome,
    invalid_response,
    run_outcome,
)
from worker.providers.runflow.signature import verify_runflow_callback
from worker.values.canonical import EditInput

#: Runflow's public API.
RUNFLOW_API_URL = "https://api.runflow.io"

#: Canonical model name -> Runflow model id. Runflow offers Kontext [pro] only.
MODEL_IDS: Mapping[str, str] = {"flux-kontext-pro": "black-forest-labs/flux-pro/kontext"}

#: Canonical fields Runflow takes under the same name; anything else never reaches Runflow.


#: fal and Runflow take the same Kontext fields.
runflow_input = kontext_arguments


class RunflowProvider:
    """Runflow's hosted FLUX.1 Kontext [pro].

    :param http: the client every call goes through (its timeouts bound each call).
    :param base_url: Runflow's API; an emulator's URL in development and tests.
    :param api_key: Runflow API key (``rf_live_...``), sent as ``Authorization: Bearer``;
        ``None`` sends none.
    :param callback_secret: the callback signing secret Runflow issued (the whole
        ``whsec_...`` string, as bytes); ``None`` refuses every callback.
    :param clock: Unix time in seconds, for ``Retry-After`` dates.
    """

    name = "runflow"
    uploads_directly = False
    idempotent_submit = False

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str = RUNFLOW_API_URL,
        api_key: str | None = None,
        callback_secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._callback_secret = callback_secret
        self._clock = clock

    def unsupported(self, model: str, edit: EditInput) -> list[Unsupported]:
        """Runflow takes every canonical field; it offers Kontext [pro] only."""
        if model == "flux-kontext-max":
            return [Unsupported("model", "Runflow offers Kontext [pro] only")]
        if model not in MODEL_IDS:
            return [Unsupported("model", f"Runflow has no {model}")]
        return []

    def submit(
        self,
        model: str,
        edit: EditInput,
        attempt_id: uuid.UUID,
        webhook_url: str | None,
        upload_url: str | None = None,
    ) -> Submission:
        """Create one run at Runflow; returns its run id.

        The attempt id travels as ``client_ref`` and ``metadata.editq_attempt``. Whether
        Runflow de-duplicates a repeated ``client_ref`` is not documented, so a submit that
        failed without an answer may still have created a run: its callback (which carries
        the attempt id) reports it, and the core does not resubmit blindly.
        """
        model_id = MODEL_IDS.get(model)
        if model_id is None:
            raise ProviderCallError(
                Fault(
                    ErrorKind.TERMINAL, faults.MODEL_UNSUPPORTED, f"Runflow has no model {model!r}"
                )
            )
        body: dict[str, Any] = {
            "input": runflow_input(edit),
            "client_ref": str(attempt_id),
            "metadata": {ATTEMPT_KEY: str(attempt_id)},
        }
        if webhook_url:
            body["callback_url"] = webhook_url
        response = self._call("POST", f"{self._base_url}/v1/models/{model_id}/runs", json=body)
        if response.is_error:
            raise ProviderCallError(self._classify(response))
        run = json_object(response.content)
        run_id = run.get("id") if run else None
        if not isinstance(run_id, str) or not run_id:
            raise ProviderCallError(
                invalid_response(f"the created run has no id: {response.text[:200]}")
            )
        return Submission(request_id=run_id, data={})

    def status(self, ref: AttemptRef) -> Outcome:
        """Where an attempt's run is at Runflow; its outputs (or failure) once it has ended.

        Raises :class:`ProviderCallError` when Runflow could not be asked; a failure Runflow
        reports about the run itself is returned as :class:`Failed`.
        """
        if ref.request_id is None:
            return Failed(_lost("no Runflow run was recorded for this attempt"))
        response = self._call("GET", f"{self._base_url}/v1/runs/{quote(ref.request_id, safe='')}")
        if response.status_code == 404:
            detail = describe_error(json_object(response.content))
            return Failed(_lost(f"Runflow does not know run {ref.request_id} ({detail})"))
        if response.is_error:
            raise ProviderCallError(self._classify(response))
        run = json_object(response.content)
        outcome = run_outcome(run) if run is not None else None
        if outcome is None:
            raise ProviderCallError(
                invalid_response(f"unreadable Runflow run: {response.text[:200]}")
            )
        return outcome

    def webhook_url(self, public_url: str, attempt_id: uuid.UUID) -> str:
        """Our callback URL; the same for every attempt, whose id travels in the signed body."""
        return f"{public_url.rstrip('/')}/v1/webhooks/runflow"

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> WebhookEvent:
        """Verify Runflow's signature on the raw body, then read the callback.

        The attempt id comes from ``metadata.editq_attempt`` and the run id from ``run_id``,
        both covered by the signature; ``query`` is not used.
        """
        verify_runflow_callback(headers, body, self._callback_secret)
        document = json_object(body)
        if document is None:
            raise WebhookRejected(MALFORMED, "the callback body is not a JSON object")
        run_id = document.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise WebhookRejected(MALFORMED, "the callback has no run_id")
        attempt_id = attempt_from_metadata(document.get("metadata"))
        return WebhookEvent(
            attempt_id=attempt_id, request_id=run_id, outcome=callback_outcome(document)
        )

    def cancel(self, ref: AttemptRef) -> None:
        """Do nothing: Runflow has no public cancel.

        Its only cancel is an admin endpoint for Runflow's own staff, and even that does not
        stop inference already running. Cancelling here means we stop tracking the run; it may
        still finish (and be billed), and its callback is then ignored.
        """

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderCallError(transport_fault(exc, "Runflow")) from exc

    def _classify(self, response: httpx.Response) -> Fault:
        return classify_runflow_error(
            response.status_code, response.headers, response.content, now=self._clock()
        )


def _lost(message: str) -> Fault:
    return Fault(ErrorKind.RETRYABLE, faults.PROVIDER_REQUEST_LOST, message)
