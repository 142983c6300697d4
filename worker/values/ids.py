"""Row ids: UUIDv7 (RFC 9562), so that rows made one after the other have ids that sort
together.

A random (version 4) id puts each new row's primary-key entry, and every entry keyed by
it (an attempt's job, an event's job), at a random place in its index. On tables of a
million jobs every such entry lands on a page of its own: a page read into memory, and
the first time after each checkpoint written whole to the WAL. A version 7 id starts
with the time in milliseconds, so new rows' entries go to the end of those indexes, a
few pages that stay in memory however long the history grows. Within a millisecond a
counter follows the time, so the ids one process makes sort in the order it made them;
the rest is random: an id is still never guessed, nor given twice.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A new UUIDv7, later than every one this process made before."""
    return uuid7()
