"""fal's webhook signatures: Ed25519 keys published as a JWKS, and the signed headers.

fal signs ``request_id + "\\n" + user_id + "\\n" + timestamp + "\\n" + hex(sha256(body))`` (UTF-8)
and sends the hex signature with the request id, user id and unix timestamp as headers.
Receivers fetch the public keys from ``/.well-known/jwks.json`` and accept a webhook if any
published key verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# A rotation keeps the previous key published, so webhooks signed just before it still verify
# for receivers with a fresh JWKS; a second rotation retires it.
PUBLISHED_KEYS = 2


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 key pair and the id it is published under."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key pair with a random id."""
        return cls(kid=secrets.token_hex(8), private_key=Ed25519PrivateKey.generate())

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty`` OKP, ``crv`` Ed25519, ``x`` base64url unpadded)."""
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid}


class KeyRing:
    """The emulator's signing keys: the newest signs, the one before it stays published."""

    def __init__(self) -> None:
        self._keys = [SigningKey.generate()]

    @property
    def current(self) -> SigningKey:
        """The key that signs from now on."""
        return self._keys[-1]

    def rotate(self) -> SigningKey:
        """Add a new signing key; the oldest beyond :data:`PUBLISHED_KEYS` is retired."""
        self._keys = [*self._keys, SigningKey.generate()][-PUBLISHED_KEYS:]
        return self.current

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document listing every published public key."""
        return {"keys": [key.jwk() for key in self._keys]}


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The exact bytes fal signs for a webhook with this raw ``body``."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


def webhook_headers(
    key: SigningKey, request_id: str, user_id: str, body: bytes, now: float
) -> dict[str, str]:
    """The ``X-Fal-Webhook-*`` headers for delivering ``body`` at unix time ``now``."""
    timestamp = str(int(now))
    signature = key.private_key.sign(signed_message(request_id, user_id, timestamp, body))
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": signature.hex(),
    }
