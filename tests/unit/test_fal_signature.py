"""fal webhook signatures: Ed25519 keys from a JWKS, checked on the raw body."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.fal_fakes import Clock, FalSigner, public_jwk
from worker.errors import WEBHOOK_SIGNATURE_INVALID as SIGNATURE_INVALID
from worker.errors import WebhookRejected
from worker.providers.fal.signature import (
    KEYS_UNAVAILABLE,
    JwksCache,
    parse_jwks,
    verify_fal_webhook,
)

BODY = b'{"request_id":"764cabcf","status":"OK","payload":{"images":[]}}'
TTL = 24 * 3600.0


@pytest.fixture
def signer() -> FalSigner:
    return FalSigner()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jwks(signer: FalSigner, clock: Clock) -> JwksCache:
    return signer.jwks(clock)


def now_of(clock: Clock) -> int:
    return int(clock())


def rejected(headers: dict[str, str], body: bytes, jwks: JwksCache, now: float) -> str:
    with pytest.raises(WebhookRejected) as caught:
        verify_fal_webhook(headers, body, jwks, now)
    return caught.value.code


def test_a_valid_signature_passes(signer: FalSigner, jwks: JwksCache, clock: Clock) -> None:
    verify_fal_webhook(signer.headers(BODY, now_of(clock)), BODY, jwks, clock())
    assert signer.fetches == 1


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_header_names_match_in_any_case(
    signer: FalSigner, jwks: JwksCache, clock: Clock, case: Callable[[str], str]
) -> None:
    headers = {case(name): value for name, value in signer.headers(BODY, now_of(clock)).items()}
    verify_fal_webhook(headers, BODY, jwks, clock())


def test_a_tampered_body_is_rejected(signer: FalSigner, jwks: JwksCache, clock: Clock) -> None:
    headers = signer.headers(BODY, now_of(clock))
    tampered = BODY.replace(b'"OK"', b'"ERROR"')
    assert rejected(headers, tampered, jwks, clock()) == SIGNATURE_INVALID


def test_a_tampered_header_is_rejected(signer: FalSigner, jwks: JwksCache, clock: Clock) -> None:
    headers = signer.headers(BODY, now_of(clock))
    headers["X-Fal-Webhook-Request-Id"] = "another-request"
    assert rejected(headers, BODY, jwks, clock()) == SIGNATURE_INVALID


def test_a_key_fal_does_not_publish_is_rejected(
    signer: FalSigner, jwks: JwksCache, clock: Clock
) -> None:
    headers = signer.headers(BODY, now_of(clock), key=Ed25519PrivateKey.generate())
    assert rejected(headers, BODY, jwks, clock()) == SIGNATURE_INVALID


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_300_seconds_pass(
    signer: FalSigner, jwks: JwksCache, clock: Clock, skew: int
) -> None:
    headers = signer.headers(BODY, now_of(clock) + skew)
    verify_fal_webhook(headers, BODY, jwks, clock())


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_stale_or_future_timestamps_are_rejected(
    signer: FalSigner, jwks: JwksCache, clock: Clock, skew: int
) -> None:
    headers = signer.headers(BODY, now_of(clock) + skew)
    assert rejected(headers, BODY, jwks, clock()) == SIGNATURE_INVALID


@pytest.mark.parametrize(
    "header",
    [
        "X-Fal-Webhook-Request-Id",
        "X-Fal-Webhook-User-Id",
        "X-Fal-Webhook-Timestamp",
        "X-Fal-Webhook-Signature",
    ],
)
def test_a_missing_header_is_rejected(
    signer: FalSigner, jwks: JwksCache, clock: Clock, header: str
) -> None:
    headers = signer.headers(BODY, now_of(clock))
    del headers[header]
    with pytest.raises(WebhookRejected) as caught:
        verify_fal_webhook(headers, BODY, jwks, clock())
    assert caught.value.code == SIGNATURE_INVALID
    assert header.lower() in caught.value.message


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Fal-Webhook-Signature", "not-hex!"),
        ("X-Fal-Webhook-Signature", "abcd"),
        ("X-Fal-Webhook-Timestamp", "yesterday"),
    ],
)
def test_garbled_headers_are_rejected(
    signer: FalSigner, jwks: JwksCache, clock: Clock, header: str, value: str
) -> None:
    headers = signer.headers(BODY, now_of(clock))
    headers[header] = value
    assert rejected(headers, BODY, jwks, clock()) == SIGNATURE_INVALID


def test_a_rotated_key_is_fetched_once_and_verifies(signer: FalSigner, clock: Clock) -> None:
    jwks = signer.jwks(clock, min_refetch_seconds=60)
    verify_fal_webhook(signer.headers(BODY, now_of(clock)), BODY, jwks, clock())
    rotated = Ed25519PrivateKey.generate()
    signer.published = [rotated]
    clock.advance(61)

    verify_fal_webhook(signer.headers(BODY, now_of(clock), key=rotated), BODY, jwks, clock())
    verify_fal_webhook(signer.headers(BODY, now_of(clock), key=rotated), BODY, jwks, clock())

    assert signer.fetches == 2


def test_forged_signatures_cannot_make_us_fetch_keys_in_a_loop(
    signer: FalSigner, clock: Clock
) -> None:
    jwks = signer.jwks(clock, min_refetch_seconds=60)
    forger = Ed25519PrivateKey.generate()
    for _ in range(5):
        headers = signer.headers(BODY, now_of(clock), key=forger)
        assert rejected(headers, BODY, jwks, clock()) == SIGNATURE_INVALID
    # The first miss fetched (nothing was cached); later misses are within a minute of it.
    assert signer.fetches == 1


def test_keys_are_kept_for_the_ttl_then_fetched_again(signer: FalSigner, clock: Clock) -> None:
    jwks = signer.jwks(clock, ttl_seconds=TTL)
    jwks.keys()
    clock.advance(TTL - 1)
    jwks.keys()
    assert signer.fetches == 1

    clock.advance(1)
    jwks.keys()
    assert signer.fetches == 2


def test_keys_older_than_the_ttl_are_not_used_when_the_jwks_is_down(
    signer: FalSigner, clock: Clock
) -> None:
    jwks = signer.jwks(clock, ttl_seconds=TTL, min_refetch_seconds=60)
    verify_fal_webhook(signer.headers(BODY, now_of(clock)), BODY, jwks, clock())
    signer.jwks_down = True
    clock.advance(TTL)

    headers = signer.headers(BODY, now_of(clock))
    assert rejected(headers, BODY, jwks, clock()) == KEYS_UNAVAILABLE
    assert rejected(headers, BODY, jwks, clock()) == KEYS_UNAVAILABLE
    assert signer.fetches == 2  # a failing JWKS host is not asked again at once

    signer.jwks_down = False
    clock.advance(60)
    verify_fal_webhook(signer.headers(BODY, now_of(clock)), BODY, jwks, clock())


def test_an_unreachable_jwks_host_rejects_with_its_own_code(clock: Clock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    jwks = JwksCache(httpx.Client(transport=httpx.MockTransport(refuse)), clock=clock)
    headers = FalSigner().headers(BODY, now_of(clock))
    assert rejected(headers, BODY, jwks, clock()) == KEYS_UNAVAILABLE


def test_any_published_key_may_verify(signer: FalSigner, jwks: JwksCache, clock: Clock) -> None:
    second = Ed25519PrivateKey.generate()
    signer.published = [Ed25519PrivateKey.generate(), second]
    verify_fal_webhook(signer.headers(BODY, now_of(clock), key=second), BODY, jwks, clock())


def test_parse_jwks_keeps_only_ed25519_keys() -> None:
    key = Ed25519PrivateKey.generate()
    rsa = {"kty": "RSA", "n": "0vx7agoebGcQSuu", "e": "AQAB"}
    short = {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}
    x448 = {**public_jwk(key), "crv": "X448"}
    keys = parse_jwks({"keys": [rsa, short, x448, public_jwk(key)]})
    assert len(keys) == 1
    assert keys[0].public_bytes_raw() == key.public_key().public_bytes_raw()


@pytest.mark.parametrize("document", [{}, {"keys": []}, {"keys": [{"kty": "RSA"}]}, []])
def test_parse_jwks_refuses_a_document_without_ed25519_keys(document: object) -> None:
    with pytest.raises(ValueError, match="JWKS"):
        parse_jwks(document)
