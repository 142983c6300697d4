"""The canonical edit request accepts what providers accept and names what it refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.factories import data_uri
from worker.values.canonical import EditInput


def test_defaults_and_the_fields_sent_on() -> None:
    edit = EditInput(prompt="make it blue", image_url="https://example.com/a.jpg")
    assert edit.num_images == 1 and edit.output_format == "jpeg"
    assert edit.provider_fields() == {
        "prompt": "make it blue",
        "image_url": "https://example.com/a.jpg",
        "num_images": 1,
        "output_format": "jpeg",
    }


def test_a_base64_data_uri_is_an_image() -> None:
    assert EditInput(prompt="x", image_url=data_uri()).image_url.startswith("data:image/jpeg")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "example.com/a.jpg",
        "data:image/png,abc",
        "data:text/plain;base64,eA==",
    ],
)
def test_other_image_references_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EditInput(prompt="x", image_url=url)
    assert caught.value.errors()[0]["loc"] == ("image_url",)


def test_requests_are_frozen() -> None:
    edit = EditInput(prompt="x", image_url="https://example.com/a.jpg")
    with pytest.raises(ValidationError):
        edit.prompt = "y"  # type: ignore[misc]
