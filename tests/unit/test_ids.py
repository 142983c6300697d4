"""Row ids are UUIDv7s: the time first, so ids made one after the other sort together."""

from __future__ import annotations

import uuid

from worker.values.ids import new_id


def test_an_id_is_a_version_7_uuid_with_the_time_in_milliseconds_first() -> None:
    made = new_id(now=1_733_339_912.345)

    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert made.int >> 80 == 1_733_339_912_345


def test_later_ids_sort_after_earlier_ones_and_none_repeats() -> None:
    earlier = [new_id(now=1_733_339_912.0) for _ in range(1000)]
    later = [new_id(now=1_733_339_912.001) for _ in range(1000)]

    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 2000


def test_the_clock_is_read_when_no_time_is_given() -> None:
    first, second = new_id(), new_id()

    assert first.int >> 80 <= second.int >> 80
