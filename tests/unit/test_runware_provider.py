"""The Runware adapter against Runware's wire format: submit, poll, webhooks and errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.unit.runware_fakes import (
    BAD_REFERENCE,
    BASE_URL,
    CONFLICT,
    IMAGE_UUIDS,
    INVALID_API_KEY,
    INVALID_WIDTH,
    MODERATED,
    TASK_NOT_FOUND,
    TASK_UUID,
    FakeRunware,
    ack,
    error,
    errors,
    processing,
    success,
)
from worker.faults import ErrorKind, Fault
from worker.providers.base import (
    AttemptRef,
    Completed,
    Failed,
    Pending,
    Provider,
    ProviderCallError,
    RemoteOutput,
    Submission,
    Unsupported,
)
from worker.providers.runware.adapter import RunwareProvider
from worker.values.canonical import EditInput

ATTEMPT = uuid.UUID(TASK_UUID)
SECRET = b"runware-webhook-secret"
EDIT = EditInput(
    prompt="replace the background with a sunlit beach",
    image_url="https://shop.example.com/p/123.jpg",
    aspect_ratio="16:9",
)
UPLOAD = "https://bucket.s3.example.com/outputs/job/0.jpg?X-Amz-Signature=abc"


class SourceSizes:
    """Stands in for the source-image probe: a fixed size, and the URLs it was asked about."""

    def __init__(self, size: tuple[int, int] = (1200, 800)) -> None:
        self.size = size
        self.asked: list[str] = []

    def __call__(self, url: str) -> tuple[int, int]:
        self.asked.append(url)
        return self.size


@pytest.fixture
def runware() -> FakeRunware:
    return FakeRunware()


@pytest.fixture
def sizes() -> SourceSizes:
    return SourceSizes()


@pytest.fixture
def provider(runware: FakeRunware, sizes: SourceSizes) -> Iterator[RunwareProvider]:
    with runware.client() as http:
        yield RunwareProvider(
            http, webhook_secret=SECRET, image_size=sizes, base_url=BASE_URL, api_key="rw-key"
        )


def ref(images: int = 1, uploaded: bool = False, **data: Any) -> AttemptRef:
    recorded = {"uploaded": uploaded, "images": images, "content_type": "image/jpeg", **data}
    return AttemptRef(attempt_id=ATTEMPT, request_id=TASK_UUID, data=recorded)


def call_error(call: object) -> ProviderCallError:
    assert callable(call)
    with pytest.raises(ProviderCallError) as caught:
        call()
    return caught.value


def failed(outcome: object) -> Fault:
    assert isinstance(outcome, Failed), outcome
    return outcome.fault


def test_it_is_a_provider_that_uploads_directly(provider: RunwareProvider) -> None:
    typed: Provider = provider
    assert (typed.name, typed.uploads_directly) == ("runware", True)


# submit


def test_submit_sends_one_async_inference_task_under_the_attempt_id(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    submission = provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)

    request = runware.requests[-1]
    assert (request.method, str(request.url)) == ("POST", BASE_URL)
    assert request.headers["Authorization"] == "Bearer rw-key"
    assert runware.tasks() == [
        {
            "taskType": "imageInference",
            "taskUUID": TASK_UUID,
            "model": "bfl:3@1",
            "positivePrompt": "replace the background with a sunlit beach",
            "inputs": {"referenceImages": ["https://shop.example.com/p/123.jpg"]},
            "width": 1392,
            "height": 752,
            "numberResults": 1,
            "outputType": "URL",
            "outputFormat": "JPG",
            "deliveryMethod": "async",
            "includeCost": True,
        }
    ]
    assert submission == Submission(
        request_id=TASK_UUID,
        data={"uploaded": False, "images": 1, "content_type": "image/jpeg", "size": [1392, 752]},
    )


def test_submit_translates_every_canonical_field(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    edit = EDIT.model_copy(
        update={
            "num_images": 3,
            "seed": 42,
            "output_format": "png",
            "safety_tolerance": 5,
            "enhance_prompt": True,
        }
    )
    hook = provider.webhook_url("https://editq.example.com", ATTEMPT)

    submission = provider.submit("flux-kontext-pro", edit, ATTEMPT, hook, UPLOAD)

    [task] = runware.tasks()
    assert (task["numberResults"], task["seed"], task["outputFormat"]) == (3, 42, "PNG")
    # An int on Runware, unlike fal's string.
    assert task["providerSettings"] == {"bfl": {"safetyTolerance": 5, "promptUpsampling": True}}
    assert (task["webhookURL"], task["uploadEndpoint"]) == (hook, UPLOAD)
    assert submission.data == {
        "uploaded": True,
        "images": 3,
        "content_type": "image/png",
        "size": [task["width"], task["height"]],
    }


@pytest.mark.parametrize(
    ("changes", "settings"),
    [
        ({"safety_tolerance": 2}, {"safetyTolerance": 2}),
        ({"enhance_prompt": False}, {"promptUpsampling": False}),
    ],
)
def test_provider_settings_carry_only_the_fields_that_were_set(
    provider: RunwareProvider, runware: FakeRunware, changes: dict[str, Any], settings: object
) -> None:
    provider.submit("flux-kontext-pro", EDIT.model_copy(update=changes), ATTEMPT, None)

    assert runware.tasks()[0]["providerSettings"] == {"bfl": settings}


@pytest.mark.parametrize(
    ("aspect_ratio", "size"),
    [
        ("21:9", (1568, 672)),
        ("16:9", (1392, 752)),
        ("4:3", (1184, 880)),
        ("3:2", (1248, 832)),
        ("1:1", (1024, 1024)),
        ("2:3", (832, 1248)),
        ("3:4", (880, 1184)),
        ("9:16", (752, 1392)),
        ("9:21", (672, 1568)),
    ],
)
def test_each_aspect_ratio_is_sent_as_its_size(
    provider: RunwareProvider,
    runware: FakeRunware,
    sizes: SourceSizes,
    aspect_ratio: str,
    size: tuple[int, int],
) -> None:
    provider.submit(
        "flux-kontext-pro", EDIT.model_copy(update={"aspect_ratio": aspect_ratio}), ATTEMPT, None
    )

    [task] = runware.tasks()
    assert (task["width"], task["height"]) == size
    assert sizes.asked == []


@pytest.mark.parametrize(
    ("source", "size"),
    [
        ((1200, 800), (1248, 832)),
        ((640, 480), (1184, 880)),
        ((500, 500), (1024, 1024)),
        ((3000, 1000), (1568, 672)),
        ((1080, 1920), (752, 1392)),
        ((300, 2000), (672, 1568)),
    ],
)
def test_without_an_aspect_ratio_the_closest_size_to_the_source_is_sent(
    provider: RunwareProvider,
    runware: FakeRunware,
    sizes: SourceSizes,
    source: tuple[int, int],
    size: tuple[int, int],
) -> None:
    sizes.size = source

    provider.submit(
        "flux-kontext-pro", EDIT.model_copy(update={"aspect_ratio": None}), ATTEMPT, None
    )

    [task] = runware.tasks()
    assert (task["width"], task["height"]) == size
    assert sizes.asked == [EDIT.image_url]


def test_a_source_that_cannot_be_measured_is_not_submitted(
    runware: FakeRunware,
) -> None:
    def unreadable(url: str) -> tuple[int, int]:
        fault = Fault(ErrorKind.TERMINAL, "source_image_unreadable", f"{url} is not an image")
        raise ProviderCallError(fault)

    with runware.client() as http:
        provider = RunwareProvider(http, webhook_secret=SECRET, image_size=unreadable)
        edit = EDIT.model_copy(update={"aspect_ratio": None})
        raised = call_error(lambda: provider.submit("flux-kontext-pro", edit, ATTEMPT, None))

    assert raised.fault.code == "source_image_unreadable"
    assert runware.requests == []


def test_a_resubmitted_attempt_that_runware_already_has_is_accepted_once(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    runware.answer("imageInference", 400, CONFLICT)

    submission = provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None, UPLOAD)

    assert submission.request_id == TASK_UUID
    assert submission.data["uploaded"] is True
    assert len(runware.requests) == 1


def test_submit_errors_are_classified_naming_runwares_parameter(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    runware.answer("imageInference", 400, INVALID_WIDTH)

    fault = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)).fault

    assert (fault.kind, fault.code) == (ErrorKind.TERMINAL, "provider_validation")
    assert "invalidWidth at width" in fault.message
    assert "between 256 and 16383" in fault.message


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (httpx.ConnectError("refused"), "provider_unreachable"),
        (httpx.ReadTimeout("slow"), "provider_timeout"),
    ],
)
def test_submit_without_an_answer_is_retryable(
    provider: RunwareProvider, runware: FakeRunware, failure: httpx.HTTPError, code: str
) -> None:
    runware.fail("imageInference", failure)

    fault = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)).fault

    assert (fault.kind, fault.code) == (ErrorKind.RETRYABLE, code)
    assert "runware" in fault.message


def test_an_ack_for_another_task_is_not_trusted(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    runware.answer("imageInference", 200, ack(str(uuid.uuid4())))

    fault = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)).fault

    assert fault.code == "provider_response_invalid"


def test_submit_refuses_a_model_runware_does_not_offer(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    fault = call_error(lambda: provider.submit("flux-kontext-max", EDIT, ATTEMPT, None)).fault

    assert (fault.kind, fault.code) == (ErrorKind.TERMINAL, "model_unsupported")
    assert runware.requests == []


@pytest.mark.parametrize(
    ("model", "changes", "refused"),
    [
        ("flux-kontext-pro", {}, []),
        ("flux-kontext-pro", {"seed": 1, "safety_tolerance": 6, "num_images": 4}, []),
        ("flux-kontext-max", {}, ["model"]),
        ("flux-kontext-pro", {"guidance_scale": 3.5}, ["guidance_scale"]),
        ("flux-kontext-max", {"guidance_scale": 3.5}, ["model", "guidance_scale"]),
    ],
)
def test_unsupported_names_what_runware_cannot_honour(
    provider: RunwareProvider, model: str, changes: dict[str, Any], refused: list[str]
) -> None:
    found = provider.unsupported(model, EDIT.model_copy(update=changes))

    assert [item.field for item in found] == refused
    assert all(isinstance(item, Unsupported) and item.reason for item in found)
    if "guidance_scale" in refused:
        assert "Runware's bfl:3@1 takes no guidance scale" in [item.reason for item in found]


# status


def test_status_asks_runware_for_the_tasks_response(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    runware.answer("getResponse", 200, {"data": [processing()]})

    assert provider.status(ref()) == Pending()
    assert runware.tasks() == [{"taskType": "getResponse", "taskUUID": TASK_UUID}]
    assert runware.requests[-1].headers["Authorization"] == "Bearer rw-key"


@pytest.mark.parametrize(
    "items",
    [
        [processing(), processing()],
        [{**processing(), "status": "pending"}, success(0)],
        [success(0), processing()],
        [success(0), success(0)],  # a poll repeating one image is still one image
        [],
    ],
    ids=["processing", "older pending", "partial", "repeated", "nothing yet"],
)
def test_an_attempt_is_pending_until_every_image_succeeded(
    provider: RunwareProvider, runware: FakeRunware, items: list[dict[str, Any]]
) -> None:
    runware.answer("getResponse", 200, {"data": items})

    assert provider.status(ref(images=2)) == Pending()


def test_a_finished_attempt_yields_its_images_and_their_cost(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    runware.answer("getResponse", 200, {"data": [success(0), success(1)]})

    outcome = provider.status(ref(images=2))

    assert outcome == Completed(
        outputs=tuple(
            RemoteOutput(
                f"https://im.runware.ai/image/ws/2/ii/{image}.jpg", "image/jpeg", flagged=False
            )
            for image in IMAGE_UUIDS
        ),
        cost_usd=Decimal("0.08"),
    )


def test_an_nsfw_output_is_flagged_for_the_quality_gate_not_failed_here(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    runware.answer("getResponse", 200, {"data": [success(0, NSFWContent=True), success(1)]})
    outcome = provider.status(ref(images=2))
    assert isinstance(outcome, Completed)
    assert [o.flagged for o in outcome.outputs] == [True, False]


def test_outputs_runware_uploaded_are_marked_stored(
    provider: RunwareProvider, runware: FakeRunware
) -> None:
    item = success(0, imageURL=f"https://im.runware.ai/image/ws/2/ii/{IMAGE_UUIDS[0]}.png")
    del item["cost"]
    runware.answer("getResponse", 200, {"data": [item]})

    outcome = provider.status(ref(uploaded=True, content_type="image/png"))

    assert isinstance(outcome, Completed)
    assert [(o.stored, o.content_type) for o in outcome.outputs] == [(True, "image/png")]
    assert outcome.cost_usd is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (errors(MODERATED), (ErrorKind.TERMINAL, "content_moderated")),
        (errors(BAD_REFERENCE), (ErrorKind.TERMINAL, "source_image_unreadable")),
        (
            {"data": [success(0)], "errors": [error("timeoutProvider", "The provider timed out.")]},
            (ErrorKind.RETRYABLE, "provider_timeout"),
        ),
        (
            {"data": [{**processing(), "status": "error", "error": MODERATED}]},
            (ErrorKind.TERMINAL, "content_moderated"),
        ),
        (TASK_NOT_FOUND, (ErrorKind.RETRYABLE, "provider_request_lost")),
    ],
    ids=["moderated", "bad reference", "timeout", "error item", "unknown task"],
)
def test_a_failed_generation_fails_the_attempt(
    provider: RunwareProvider,
    runware: FakeRunware,
    answer: dict[str, Any],
    expected: tuple[ErrorKind, str],
) -> None:
    runware.answer("getResponse", 404 if answer is TASK_NOT_FOUND else 200, answer)

    fault = failed(provider.status(ref(images=2)))

    assert (fault.kind, fault.code) == expected


def test_an_attempt_without_a_recorded_task_is_lost(provider: RunwareProvider) -> None:
    fault = failed(provider.status(AttemptRef(ATTEMPT, None, {})))

    assert fault.code == "provider_request_lost"


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (429, errors(error("rateLimitExceeded", "Too many requests")), "rate_limited"),
        (503, errors(error("serviceUnavailable", "Try later")), "provider_unavailable"),
        (401, INVALID_API_KEY, "provider_auth_failed"),
        (200, "not json", "provider_response_invalid"),
    ],
)
def test_a_poll_that_fails_raises(
    provider: RunwareProvider, runware: FakeRunware, status: int, answer: object, expected: str
) -> None:
    runware.answer("getResponse", status, answer, **{"Retry-After": "3"})

    fault = call_error(lambda: provider.status(ref())).fault

    assert fault.code == expected


def test_cancel_sends_nothing(provider: RunwareProvider, runware: FakeRunware) -> None:
    provider.cancel(ref())

    assert runware.requests == []
