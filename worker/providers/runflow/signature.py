"""Verification of Runflow callback signatures: hex HMAC-SHA256 over the raw body.

Runflow sends ``Runflow-Signature: <hex>``, the HMAC-SHA256 of the raw request body keyed
with the callback secret Runflow issued (the whole ``whsec_...`` string, as UTF-8 bytes).

Runflow signs no timestamp, so a captured callback can be replayed. That is harmless here:
the attempt id travels inside the signed body, and every transition the core makes from a
callback is guarded by the attempt's current state, so a replay either repeats a transition
already made (zero rows, ignored) or finds the attempt gone on to another state.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from worker.errors import WEBHOOK_SIGNATURE_INVALID as SIGNATURE_INVALID
from worker.errors import WebhookRejected

SIGNATURE_HEADER = "runflow-signature"


def callback_signature(secret: bytes, body: bytes) -> str:
    """The hex signature Runflow sends with ``body`` when its secret is ``secret``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_runflow_callback(headers: Mapping[str, str], body: bytes, secret: bytes | None) -> None:
    """Check that Runflow sent this callback, on its raw body, before anything parses it.

    :param headers: the request's headers, in any letter case.
    :param body: the raw request body, exactly as received.
    :param secret: the callback secret; ``None`` refuses every callback, since none can be
        verified.
    :raises WebhookRejected: ``webhook_signature_invalid`` without a secret, without the
        header, or when the signature does not match.
    """
    if secret is None:
        raise WebhookRejected(
            SIGNATURE_INVALID,
            "no Runflow callback secret is configured, so no callback can be verified;"
            " set EDITQ_RUNFLOW_CALLBACK_SECRET",
        )
    given = next(
        (value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER), None
    )
    if not given:
        raise WebhookRejected(SIGNATURE_INVALID, "the Runflow-Signature header is missing")
    expected = callback_signature(secret, body)
    # Both sides as bytes: compare_digest refuses non-ASCII str, and a forged header may be.
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise WebhookRejected(
            SIGNATURE_INVALID,
            "the Runflow-Signature does not match the body; check that"
            " EDITQ_RUNFLOW_CALLBACK_SECRET is the current callback secret",
        )
