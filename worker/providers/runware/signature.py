"""Authenticating Runware's callbacks: Runware signs nothing, so our URL carries a token.

The callback URL we hand Runware for an attempt carries :func:`webhook_token`, an HMAC of
the attempt id keyed with ``EDITQ_WEBHOOK_SECRET``; a callback is believed only when its
token matches. Even then it is only a wake-up: the adapter confirms the result with
``getResponse`` before the core acts on it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid


def webhook_token(secret: bytes, attempt_id: uuid.UUID | str) -> str:
    """The token that authenticates Runware's callbacks about one attempt.

    Runware does not sign its webhooks, so the callback URL carries this HMAC-SHA256 (hex)
    of the attempt id: only someone who holds ``secret`` can make one.
    """
    return hmac.new(secret, str(attempt_id).encode(), hashlib.sha256).hexdigest()
