"""Row ids are UUIDv7s: the time first, so ids made one after the other sort together."""

from __future__ import annotations

import time
import uuid

from worker.values.ids import new_id


def test_an_id_is_a_version_7_uuid_with_the_time_in_milliseconds_first() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000

    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ids_made_one_after_the_other_sort_in_that_order_and_none_repeats() -> None:
    made = [new_id() for _ in range(10_000)]

    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_an_id_is_written_and_compared_as_any_uuid() -> None:
    made = new_id()

    assert uuid.UUID(str(made)) == made
    assert made == uuid.UUID(int=made.int)
