"""The Runware adapter: FLUX.1 Kontext [pro] (``bfl:3@1``) through Runware's task API.

Every call is ``POST`` of a JSON array of tasks to one URL. Submit sends one
``imageInference`` task with ``deliveryMethod: "async"`` and our attempt id as its
``taskUUID``: Runware refuses a second task with the same id (``conflictTaskUUID``), so a
submit repeated after a crash finds the attempt already there instead of paying twice.
Status is a ``getResponse`` task, which reports each generation as ``processing``,
``success`` or ``error``. Runware does not sign webhooks; the callback URL carries a
per-attempt HMAC token instead (:func:`worker.providers.runware.signature.webhook_token`).
Errors are classified in :mod:`worker.providers.runware.errors`; the wire format lives in
:mod:`worker.providers.runware.payloads`.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx

from worker import faults
from worker.errors import WEBHOOK_MALFORMED as MALFORMED
from worker.errors import WEBHOOK_SIGNATURE_INVALID as SIGNATURE_INVALID
from worker.errors import WebhookRejected
from worker.faults import ErrorKind, Fault
from worker.providers.base import (
    AttemptRef,
    Failed,
    Outcome,
    Pending,
    ProviderCallError,
    Submission,
    Unsupported,
    WebhookEvent,
)
from worker.providers.common import transport_fault
from worker.providers.runware.errors import (
    CONFLICT_TASK_UUID,
    classify_runware_error,
    is_not_found,
)
from worker.providers.runware.payloads import (
    OUTPUT_FORMATS,
    SIZES,
    Envelope,
    callback_items,
    closest_size,
    envelope,
    generation_failure,
    inference_task,
    invalid_answer,
    progress,
)
from worker.providers.runware.signature import webhook_token
from worker.values.canonical import EditInput

#: Runware's task API: every task array is POSTed to exactly this URL.
RUNWARE_API_URL = "https://api.runware.ai/v1"

#: Canonical model name -> Runware's model id. Kontext [max] is not here: Runware's
#: published model list names no id for it, so it is refused rather than guessed.
MODEL_IDS: Mapping[str, str] = {"flux-kontext-pro": "bfl:3@1"}


ImageSize = Callable[[str], tuple[int, int]]


class RunwareProvider:
    """Runware's hosted FLUX.1 Kontext [pro], through its task API.

    :param http: the client every call goes through (its timeouts bound each call).
    :param webhook_secret: key of the per-attempt tokens in our webhook URLs; ``None`` means
        no callbacks (every process must share the key, so none is made up): jobs are polled.
    :param image_size: the source image's ``(width, height)`` from its URL; asked only when
        no aspect ratio is given, and it raises :class:`ProviderCallError` itself when the
        image cannot be read.
    :param base_url: Runware's task API; an emulator's URL in development and tests.
    :param api_key: sent as ``Authorization: Bearer <key>``; ``None`` sends none.
    :param clock: Unix time in seconds, for HTTP-date ``Retry-After`` values.
    """

    name = "runware"
    uploads_directly = True
    # taskUUID is our attempt id; a repeat is answered with conflictTaskUUID.
    idempotent_submit = True

    def __init__(
        self,
        http: httpx.Client,
        *,
        webhook_secret: bytes | None,
        image_size: ImageSize,
        base_url: str = RUNWARE_API_URL,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._secret = webhook_secret
        self._image_size = image_size
        self._url = base_url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._clock = clock

    def unsupported(self, model: str, edit: EditInput) -> list[Unsupported]:
        """Runware runs Kontext [pro] only, and ``bfl:3@1`` takes no guidance scale."""
        refused = []
        if model == "flux-kontext-max":
            reason = "Runware does not offer FLUX.1 Kontext [max]; send it to fal"
            refused.append(Unsupported("model", reason))
        elif model not in MODEL_IDS:
            refused.append(Unsupported("model", f"Runware has no {model}"))
        if edit.guidance_scale is not None:
            refused.append(
                Unsupported("guidance_scale", "Runware's bfl:3@1 takes no guidance scale")
            )
        return refused

    def submit(
        self,
        model: str,
        edit: EditInput,
        attempt_id: uuid.UUID,
        webhook_url: str | None,
        upload_url: str | None = None,
    ) -> Submission:
        """Queue one attempt at Runware under our attempt id; returns at Runware's ack.

        A ``conflictTaskUUID`` answer means Runware already has this attempt (an earlier
        submit got through before we crashed or lost the answer): that is an acceptance,
        and nothing is sent again. ``guidance_scale`` has no Runware field and is not sent;
        :meth:`unsupported` tells the core so before it routes here.
        """
        model_id = MODEL_IDS.get(model)
        if model_id is None:
            raise ProviderCallError(
                Fault(ErrorKind.TERMINAL, faults.MODEL_UNSUPPORTED, f"Runware has no {model!r}")
            )
        task_uuid = str(attempt_id)
        size = self._size(edit)
        task = inference_task(
            model_id,
            edit,
            task_uuid,
            size,
            webhook_url=webhook_url,
            upload_url=upload_url,
        )
        response = self._post(task)
        answer = envelope(response.content)
        accepted = Submission(
            request_id=task_uuid,
            data={
                "uploaded": bool(upload_url),
                "images": edit.num_images,
                "content_type": OUTPUT_FORMATS[edit.output_format][1],
                # The exact size asked for, which the quality gate holds the outputs to.
                "size": list(size),
            },
        )
        if answer is not None and _already_there(answer, task_uuid):
            return accepted
        if response.is_error or (answer is not None and answer.errors):
            raise ProviderCallError(self._classify(response))
        if answer is None or not any(item.get("taskUUID") == task_uuid for item in answer.data):
            raise ProviderCallError(
                invalid_answer(
                    f"submit answer does not acknowledge the task: {response.text[:200]}"
                )
            )
        return accepted

    def _size(self, edit: EditInput) -> tuple[int, int]:
        if edit.aspect_ratio is not None:
            return SIZES[edit.aspect_ratio]
        width, height = self._image_size(edit.image_url)
        if width <= 0 or height <= 0:
            raise ProviderCallError(
                Fault(
                    ErrorKind.TERMINAL,
                    faults.SOURCE_IMAGE_UNREADABLE,
                    f"the source image reports an impossible size {width}x{height}",
                )
            )
        return closest_size(width, height)

    def status(self, ref: AttemptRef) -> Outcome:
        """Where an attempt is at Runware: every generation it asked for, or why not.

        Raises :class:`ProviderCallError` when Runware could not be asked; a failure Runware
        reports about the attempt itself is returned as :class:`Failed`.
        """
        if ref.request_id is None:
            return Failed(_lost("no Runware task was recorded for this attempt"))
        response = self._post({"taskType": "getResponse", "taskUUID": ref.request_id})
        if response.status_code == 429 or response.status_code >= 500:
            raise ProviderCallError(self._classify(response))
        answer = envelope(response.content)
        if answer is None:
            fault = self._classify(response) if response.is_error else None
            raise ProviderCallError(
                fault or invalid_answer(f"not a Runware answer: {response.text[:200]}")
            )
        if any(is_not_found(str(error.get("code"))) for error in answer.errors):
            return Failed(_lost(f"Runware does not know task {ref.request_id} (any more)"))
        failure = generation_failure(answer, response.status_code)
        if failure is not None:
            return Failed(failure)
        if response.is_error or answer.errors:
            raise ProviderCallError(self._classify(response))
        return progress(ref, answer)

    def webhook_url(self, public_url: str, attempt_id: uuid.UUID) -> str | None:
        """Our callback URL for one attempt, with the token that authenticates Runware's calls."""
        if self._secret is None:
            return None
        token = webhook_token(self._secret, attempt_id)
        return f"{public_url.rstrip('/')}/v1/webhooks/runware?attempt={attempt_id}&token={token}"

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> WebhookEvent:
        """Authenticate a callback by its URL token, then read which attempt it is about.

        The outcome is :class:`Pending`, as Runware sends one callback per image. Its
        ``settle`` reads the callback against the attempt as recorded at submit: when every
        image the attempt asked for is in it (an attempt of one image), that is the result,
        and no poll is needed. Otherwise, and for an error, the core confirms with a poll.
        """
        token = query.get("token")
        if not token or self._secret is None:
            raise WebhookRejected(SIGNATURE_INVALID, "the callback URL carries no token of ours")
        attempt_id = _attempt_from_query(query)
        expected = webhook_token(self._secret, attempt_id)
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise WebhookRejected(SIGNATURE_INVALID, "the callback URL token is not ours")
        try:
            items = callback_items(json.loads(body))
        except ValueError as exc:
            raise WebhookRejected(MALFORMED, "the callback body is not JSON") from exc
        task_uuids = {item.get("taskUUID") for item in items}
        if not items or task_uuids != {str(attempt_id)}:
            raise WebhookRejected(
                MALFORMED,
                f"the callback is not about attempt {attempt_id}: {sorted(map(str, task_uuids))}",
            )
        return WebhookEvent(
            attempt_id=attempt_id,
            request_id=str(attempt_id),
            outcome=Pending(),
            settle=partial(_settle, items),
        )

    def cancel(self, ref: AttemptRef) -> None:
        """Runware has no way to cancel a task; the core stops tracking it instead."""

    def _post(self, task: Mapping[str, Any]) -> httpx.Response:
        try:
            return self._http.post(self._url, json=[task], headers=self._headers)
        except httpx.HTTPError as exc:
            raise ProviderCallError(transport_fault(exc, "runware")) from exc

    def _classify(self, response: httpx.Response) -> Fault:
        return classify_runware_error(
            response.status_code, response.headers, response.content, now=self._clock()
        )


def _already_there(answer: Envelope, task_uuid: str) -> bool:
    return any(
        error.get("code") == CONFLICT_TASK_UUID and error.get("taskUUID") in (None, task_uuid)
        for error in answer.errors
    )


def _settle(items: tuple[Mapping[str, Any], ...], ref: AttemptRef) -> Outcome:
    """The callback's ``items`` as the attempt's outcome, when they are the whole of it."""
    if "images" not in ref.data:
        # Not yet recorded as running (the callback beat the submit's answer): the count of
        # images asked for is not known, so the poll decides.
        return Pending()
    if any(item.get("status") == "error" or "code" in item for item in items):
        return Pending()  # a failure is read from the poll, as Runware reports it there
    return progress(ref, Envelope(data=items, errors=()))


def _attempt_from_query(query: Mapping[str, str]) -> uuid.UUID:
    value = query.get("attempt")
    if not value:
        raise WebhookRejected(MALFORMED, "the callback URL names no attempt")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise WebhookRejected(MALFORMED, f"attempt {value[:64]!r} is not a UUID") from exc


def _lost(message: str) -> Fault:
    return Fault(ErrorKind.RETRYABLE, faults.PROVIDER_REQUEST_LOST, message)
