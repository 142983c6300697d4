"""Producer API keys: kept only as sha256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


class KeyRing:
    """The set of accepted producer keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization: Bearer <key>`` header carries an accepted key."""
        if not authorization:
            return False
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return False
        digest = hashlib.sha256(key.strip().encode()).digest()
        # Compare against every key, always, so timing says nothing about which matched.
        matches = [hmac.compare_digest(digest, known) for known in self._digests]
        return any(matches)
