"""Verification of fal.ai webhook signatures: Ed25519 over a digest of the raw body.

fal signs ``request_id + "\\n" + user_id + "\\n" + timestamp + "\\n" + hex(sha256(body))``
(UTF-8) with one of the Ed25519 keys it publishes as a JWKS, and sends the request id,
user id, timestamp and hex signature in ``X-Fal-Webhook-*`` headers. A callback is
accepted when its timestamp is within ±300 s of now and any published key verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from worker.errors import WEBHOOK_SIGNATURE_INVALID as SIGNATURE_INVALID
from worker.errors import WebhookRejected

#: Where fal publishes its webhook signing keys.
FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
#: fal's advice: keep the keys for at most a day.
DEFAULT_TTL_SECONDS = 24 * 3600.0
#: How far a callback's timestamp may be from our clock, either way.
TIMESTAMP_TOLERANCE_SECONDS = 300
#: Stable code when the keys could not be fetched, so nothing could be verified.
KEYS_UNAVAILABLE = "webhook_keys_unavailable"

REQUEST_ID_HEADER = "x-fal-webhook-request-id"
USER_ID_HEADER = "x-fal-webhook-user-id"
TIMESTAMP_HEADER = "x-fal-webhook-timestamp"
SIGNATURE_HEADER = "x-fal-webhook-signature"
_REQUIRED_HEADERS = (REQUEST_ID_HEADER, USER_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)

_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")

Keys = tuple[Ed25519PublicKey, ...]


class JwksUnavailableError(Exception):
    """fal's signing keys could not be fetched; no webhook can be verified until they are."""


class JwksCache:
    """fal's webhook signing keys, fetched from a JWKS URL and kept for at most ``ttl_seconds``.

    Thread-safe: one lock guards the keys, and a fetch happens under it so that a burst of
    webhooks after expiry triggers one fetch, not one each.

    :param http: client used to fetch the JWKS (its timeouts bound a fetch).
    :param url: the JWKS document's URL; an emulator's in tests and development.
    :param ttl_seconds: how long fetched keys are trusted before they are fetched again.
    :param min_refetch_seconds: least time between two fetches; bounds how often forged
        signatures (or a failing JWKS host) can make us fetch.
    :param clock: monotonic seconds; injectable so tests can move time.
    """

    def __init__(
        self,
        http: httpx.Client,
        url: str = FAL_JWKS_URL,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        min_refetch_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = url
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: Keys | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None

    def keys(self) -> Keys:
        """The current keys, fetched first when none are cached or they have expired.

        Raises :class:`JwksUnavailableError` when a needed fetch fails.
        """
        with self._lock:
            now = self._clock()
            if self._keys is not None and now - self._fetched_at < self._ttl:
                return self._keys
            return self._fetch(now)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether any of fal's keys signed ``message``.

        When no cached key verifies, the keys are fetched again once (fal may have rotated
        them), unless they were fetched less than ``min_refetch_seconds`` ago.
        """
        cached = self.keys()
        if _any_verifies(cached, message, signature):
            return True
        fresh = self._refetch_after_miss(cached)
        return fresh is not None and _any_verifies(fresh, message, signature)

    def _refetch_after_miss(self, seen: Keys) -> Keys | None:
        with self._lock:
            if self._keys is not seen:
                # Another thread fetched while we verified: try its keys, do not fetch again.
                return self._keys
            now = self._clock()
            last = max(self._fetched_at, self._failed_at or self._fetched_at)
            if now - last < self._min_refetch:
                return None
            return self._fetch(now)

    def _fetch(self, now: float) -> Keys:
        if self._failed_at is not None and now - self._failed_at < self._min_refetch:
            # Do not hammer a JWKS host that is failing; fal retries its deliveries.
            raise JwksUnavailableError(f"fetching {self._url} failed moments ago")
        try:
            response = self._http.get(self._url)
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            self._failed_at = now
            raise JwksUnavailableError(
                f"could not fetch fal's keys from {self._url}: {exc}"
            ) from exc
        self._keys = keys
        self._fetched_at = now
        self._failed_at = None
        return keys


def parse_jwks(document: object) -> Keys:
    """The Ed25519 keys of a JWKS document; other key types are skipped.

    Raises :class:`ValueError` when the document holds no usable Ed25519 key.
    """
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the JWKS document has no 'keys' list")
    keys = tuple(key for key in map(_ed25519_key, entries) if key is not None)
    if not keys:
        raise ValueError("the JWKS document has no Ed25519 key")
    return keys


def _ed25519_key(entry: object) -> Ed25519PublicKey | None:
    if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    x = entry.get("x")
    if not isinstance(x, str):
        return None
    try:
        raw = base64.b64decode(x + "=" * (-len(x) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        return None
    if len(raw) != _ED25519_KEY_BYTES:
        return None
    return Ed25519PublicKey.from_public_bytes(raw)


def _any_verifies(keys: Keys, message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs for one callback."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


def verify_fal_webhook(
    headers: Mapping[str, str],
    body: bytes,
    jwks: JwksCache,
    now: float,
    *,
    tolerance_seconds: float = TIMESTAMP_TOLERANCE_SECONDS,
) -> None:
    """Check that fal sent this callback, on its raw body, before anything parses it.

    :param headers: the request's headers, in any letter case.
    :param body: the raw request body, exactly as received.
    :param jwks: fal's signing keys.
    :param now: the current Unix time in seconds.
    :param tolerance_seconds: how far the signed timestamp may be from ``now``.
    :raises WebhookRejected: ``webhook_signature_invalid`` for a missing header, a
        timestamp out of tolerance, a signature that is not hex, or one no key verifies;
        ``webhook_keys_unavailable`` when fal's keys could not be fetched.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in _REQUIRED_HEADERS if not lowered.get(name)]
    if missing:
        raise WebhookRejected(SIGNATURE_INVALID, f"missing signature header(s): {missing}")
    timestamp = lowered[TIMESTAMP_HEADER]
    _check_timestamp(timestamp, now, tolerance_seconds)
    signature = _decode_signature(lowered[SIGNATURE_HEADER])
    message = signed_message(lowered[REQUEST_ID_HEADER], lowered[USER_ID_HEADER], timestamp, body)
    try:
        verified = jwks.verify(message, signature)
    except JwksUnavailableError as exc:
        raise WebhookRejected(KEYS_UNAVAILABLE, str(exc)) from exc
    if not verified:
        raise WebhookRejected(SIGNATURE_INVALID, "no fal signing key verifies the signature")


def _check_timestamp(timestamp: str, now: float, tolerance_seconds: float) -> None:
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise WebhookRejected(SIGNATURE_INVALID, f"timestamp {timestamp!r} is not Unix seconds")
    skew = now - int(timestamp)
    if abs(skew) > tolerance_seconds:
        raise WebhookRejected(
            SIGNATURE_INVALID,
            f"timestamp is {skew:+.0f} s from our clock (tolerance ±{tolerance_seconds:.0f} s);"
            " a replay, or a clock that needs NTP",
        )


def _decode_signature(value: str) -> bytes:
    try:
        signature = binascii.unhexlify(value)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected(SIGNATURE_INVALID, "the signature is not hex") from exc
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise WebhookRejected(SIGNATURE_INVALID, "the signature is not 64 bytes (Ed25519)")
    return signature
