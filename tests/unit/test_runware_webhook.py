"""Runware's unsigned callbacks, authenticated by the per-attempt token in their URL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.unit.runware_fakes import MODERATED, TASK_UUID, FakeRunware, processing, success
from worker.errors import WebhookRejected
from worker.providers.base import AttemptRef, Completed, Pending, WebhookEvent
from worker.providers.runware.adapter import RunwareProvider

ATTEMPT = uuid.UUID(TASK_UUID)
SECRET = b"runware-webhook-secret"


def no_size(url: str) -> tuple[int, int]:
    raise AssertionError(f"no source should be measured for a webhook ({url})")


@pytest.fixture
def provider() -> Iterator[RunwareProvider]:
    with FakeRunware().client() as http:
        yield RunwareProvider(http, webhook_secret=SECRET, image_size=no_size)


def query_of(url: str | None) -> dict[str, str]:
    assert url is not None
    return dict(parse_qsl(urlsplit(url).query))


def rejected(provider: RunwareProvider, body: object, query: dict[str, str]) -> WebhookRejected:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(WebhookRejected) as caught:
        provider.parse_webhook({}, raw, query)
    return caught.value


def test_the_webhook_url_names_the_attempt_and_carries_its_token(
    provider: RunwareProvider,
) -> None:
    url = provider.webhook_url("https://editq.example.com/", ATTEMPT)

    assert url is not None
    assert url.startswith(f"https://editq.example.com/v1/webhooks/runware?attempt={ATTEMPT}&token=")
    token = query_of(url)["token"]
    assert len(token) == 64
    other = provider.webhook_url("https://editq.example.com", uuid.uuid4())
    assert query_of(other)["token"] != token


@pytest.mark.parametrize(
    "body",
    [
        {"data": [success(0)]},
        success(1),
        {"data": [processing()]},
        {"errors": [MODERATED]},
        MODERATED,
    ],
    ids=["data shape", "flat item", "progress", "errors shape", "flat error"],
)
def test_an_authentic_callback_is_pending_until_read_against_its_attempt(
    provider: RunwareProvider, body: dict[str, object]
) -> None:
    event = callback(provider, body)

    # One callback per image: alone, it does not say whether the attempt is done.
    assert (event.attempt_id, event.request_id, event.outcome) == (ATTEMPT, TASK_UUID, Pending())
    assert event.settle is not None


def callback(provider: RunwareProvider, body: object) -> WebhookEvent:
    query = query_of(provider.webhook_url("https://editq.example.com", ATTEMPT))
    return provider.parse_webhook({}, json.dumps(body).encode(), query)


def recorded(images: int) -> AttemptRef:
    """The attempt as the core recorded it when Runware accepted it."""
    data = {"uploaded": False, "images": images, "content_type": "image/jpeg", "size": [64, 64]}
    return AttemptRef(ATTEMPT, TASK_UUID, data)


@pytest.mark.parametrize("body", [{"data": [success(0)]}, success(0)], ids=["data", "flat"])
def test_the_callback_of_a_one_image_attempt_is_its_result(
    provider: RunwareProvider, body: object
) -> None:
    settle = callback(provider, body).settle
    assert settle is not None

    outcome = settle(recorded(images=1))

    assert isinstance(outcome, Completed)
    assert [o.url for o in outcome.outputs] == [success(0)["imageURL"]]
    assert outcome.cost_usd == Decimal("0.04")


@pytest.mark.parametrize(
    ("body", "ref"),
    [
        ({"data": [success(0)]}, recorded(images=2)),
        ({"data": [success(0)]}, AttemptRef(ATTEMPT, None, {})),
        ({"data": [processing()]}, recorded(images=1)),
        ({"errors": [MODERATED]}, recorded(images=1)),
        (MODERATED, recorded(images=1)),
        ({"data": [success(0, status="error")]}, recorded(images=1)),
    ],
    ids=["one of two", "not yet recorded", "progress", "errors shape", "flat error", "error"],
)
def test_a_callback_that_is_not_the_whole_result_leaves_it_to_a_poll(
    provider: RunwareProvider, body: object, ref: AttemptRef
) -> None:
    settle = callback(provider, body).settle
    assert settle is not None

    assert settle(ref) == Pending()


def test_a_token_made_with_another_secret_is_refused(provider: RunwareProvider) -> None:
    with FakeRunware().client() as http:
        forger = RunwareProvider(http, webhook_secret=b"guessed", image_size=no_size)
    query = query_of(forger.webhook_url("https://editq.example.com", ATTEMPT))

    assert rejected(provider, success(0), query).code == "webhook_signature_invalid"


def test_a_token_for_another_attempt_is_refused(provider: RunwareProvider) -> None:
    other = uuid.uuid4()
    query = query_of(provider.webhook_url("https://editq.example.com", other))
    query["attempt"] = str(ATTEMPT)

    assert rejected(provider, success(0), query).code == "webhook_signature_invalid"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"attempt": TASK_UUID}, "webhook_signature_invalid"),
        ({"attempt": TASK_UUID, "token": ""}, "webhook_signature_invalid"),
        ({"token": "0" * 64}, "webhook_malformed"),
        ({"attempt": "not-a-uuid", "token": "0" * 64}, "webhook_malformed"),
    ],
    ids=["no token", "empty token", "no attempt", "bad attempt"],
)
def test_a_callback_url_without_its_parts_is_refused(
    provider: RunwareProvider, query: dict[str, str], code: str
) -> None:
    assert rejected(provider, success(0), query).code == code


@pytest.mark.parametrize(
    "body",
    [
        success(0, task_uuid=str(uuid.uuid4())),
        {"data": [success(0), success(1, task_uuid=str(uuid.uuid4()))]},
        {"data": []},
        {"status": "success"},
        b"{not json",
    ],
    ids=["other task", "mixed tasks", "no items", "no task id", "not json"],
)
def test_an_authentic_callback_about_something_else_is_malformed(
    provider: RunwareProvider, body: object
) -> None:
    query = query_of(provider.webhook_url("https://editq.example.com", ATTEMPT))

    assert rejected(provider, body, query).code == "webhook_malformed"
