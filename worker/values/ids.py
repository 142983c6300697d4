"""Row ids: UUIDv7 (RFC 9562), so that rows made one after the other have ids that sort
together.

A random (version 4) id puts each new row's primary-key entry, and every entry keyed by
it (an attempt's job, an event's job), at a random place in its index. On tables of a
million jobs every such entry lands on a page of its own: a page read into memory, and
the first time after each checkpoint written whole to the WAL. A version 7 id starts
with the time in milliseconds, so new rows' entries go to the end of those indexes, a
few pages that stay in memory however long the history grows. The 74 bits after the
time are random: an id is still never guessed, nor given twice.
"""

from __future__ import annotations

import secrets
import time
import uuid

_MILLIS = (1 << 48) - 1


def new_id(now: float | None = None) -> uuid.UUID:
    """A new UUIDv7: the Unix time in milliseconds (``now``, or the clock's), then 74
    random bits."""
    millis = int((time.time() if now is None else now) * 1000) & _MILLIS
    rand = secrets.randbits(74)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62)
    return uuid.UUID(int=value | (rand & ((1 << 62) - 1)))
