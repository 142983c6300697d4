"""Runflow's callback signatures: a ``whsec_...`` secret and hex HMAC-SHA256 over the raw body.

Runflow sends ``Runflow-Signature: <hex>`` = HMAC-SHA256(secret, raw body), keyed with the
whole ``whsec_...`` string as UTF-8, and a ``Runflow-Request-Id`` for log correlation. No
timestamp is signed. ``POST /v1/callback-secrets`` issues a new secret, shown once, which
signs every callback created from then on; receivers verify with old and new during cutover.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from emulators.runflow.config import generate_callback_secret
from emulators.runflow.state import iso


def signature(secret: str, body: bytes) -> str:
    """The ``Runflow-Signature`` value for ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class CallbackSecret:
    """One signing secret and what Runflow shows about it."""

    plain: str
    label: str | None = None
    secret_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.time)

    def wire(self, *, is_current: bool, with_plain: bool = False) -> dict[str, Any]:
        """The secret as ``POST /v1/callback-secrets`` answers it (the plain secret only then)."""
        body: dict[str, Any] = {
            "id": self.secret_id,
            "label": self.label,
            "key_prefix": self.plain[:10],
            "is_current": is_current,
            "disabled_at": None,
            "last_used_at": None,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at),
        }
        if with_plain:
            body["plain_secret"] = self.plain
        return body


class SecretRing:
    """The emulator's signing secrets: the newest signs new callbacks."""

    def __init__(self, initial: str) -> None:
        self._secrets = [CallbackSecret(initial, label="initial")]

    @property
    def current(self) -> CallbackSecret:
        """The secret that signs callbacks created from now on."""
        return self._secrets[-1]

    def rotate(self, label: str | None) -> CallbackSecret:
        """Issue a new secret and make it current."""
        issued = CallbackSecret(generate_callback_secret(), label=label)
        self._secrets.append(issued)
        return issued
