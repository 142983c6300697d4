"""The quality gate at its default thresholds, over real photographs and the emulators' edits.

The README's false-positive figure comes from this corpus (``bench/quality.py``): an edit
that fails a check is a false positive, a handed-back source or a blank frame that passes
is a miss. Both must be none at the defaults.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.quality import PHOTOS, measure, photo


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    return measure().as_json()


def test_the_photographs_come_from_the_installed_package() -> None:
    assert all(photo(name)[:2] in (b"\x89P", b"\xff\xd8") for name in PHOTOS)


def test_no_real_edit_fails_a_check_at_the_defaults(measured: dict[str, Any]) -> None:
    assert measured["edits"] > len(PHOTOS) * 10  # ten or more edits of each photograph
    assert measured["false_positives"] == []


def test_every_handed_back_source_and_blank_frame_is_caught(measured: dict[str, Any]) -> None:
    assert measured["handed_back"] == len(PHOTOS) * 5
    assert measured["handed_back_missed"] == []
    assert measured["blank"] == 8 and measured["blank_missed"] == []
