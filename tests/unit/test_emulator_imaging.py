"""The emulators' image edit: visible, deterministic, shaped and encoded as asked."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from emulators.faults import FaultConfig, FaultInjector, OutputFault
from emulators.imaging import (
    MAX_SIDE,
    EditedImage,
    UnreadableImageError,
    _font,
    apply_edit,
    spoil,
)


def make_source(size: tuple[int, int] = (400, 300), image_format: str = "PNG") -> bytes:
    """A small picture with some structure: a gradient, a disc and a bar."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(220, 40, 40))
    draw.rectangle((width // 2, height // 2, width - 10, height // 2 + 20), fill=(30, 200, 60))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def edit(source: bytes, prompt: str = "make it autumn", **options: object) -> EditedImage:
    arguments: dict[str, object] = {"seed": 7, "aspect_ratio": None, "output_format": "png"}
    arguments.update(options)
    return apply_edit(source, prompt, **arguments)  # type: ignore[arg-type]


def decode(edited: EditedImage) -> Image.Image:
    image = Image.open(io.BytesIO(edited.data))
    image.load()
    return image


def test_the_edit_is_plainly_visible() -> None:
    source = make_source()

    edited = decode(edit(source))

    original = Image.open(io.BytesIO(source)).convert("RGB")
    assert edited.size == original.size
    difference = ImageStat.Stat(ImageChops.difference(original, edited.convert("RGB")))
    # Mean absolute difference per channel, out of 255: a tint, a frame and a caption, not noise.
    assert sum(difference.mean) / 3 > 20


def test_same_inputs_give_the_same_bytes() -> None:
    source = make_source()

    assert edit(source).data == edit(source).data
    assert edit(source, output_format="jpeg").data == edit(source, output_format="jpeg").data


def test_a_thread_loads_each_caption_size_once_and_keeps_its_own() -> None:
    mine = _font(12)
    theirs: list[object] = []
    other = threading.Thread(target=lambda: theirs.append(_font(12)))
    other.start()
    other.join()

    assert _font(12) is mine
    assert _font(13) is not mine
    assert theirs[0] is not mine  # a FreeType face is never shared between threads


def test_edits_in_parallel_threads_match_edits_one_at_a_time() -> None:
    source = make_source((120, 90))
    prompts = [f"make it season {n} with a long caption that must be cut" for n in range(8)]

    alone = [edit(source, prompt).data for prompt in prompts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda prompt: edit(source, prompt).data, prompts))

    assert together == alone


def test_prompt_and_seed_change_the_output() -> None:
    source = make_source()

    baseline = edit(source).data

    assert edit(source, prompt="make it winter").data != baseline
    assert edit(source, seed=8).data != baseline
    assert edit(source, seed=None).data != baseline


@pytest.mark.parametrize(
    ("aspect_ratio", "expected"),
    [("16:9", 16 / 9), ("1:1", 1.0), ("9:16", 9 / 16), ("21:9", 21 / 9), ("3:4", 3 / 4)],
)
def test_the_output_has_the_requested_aspect_ratio(aspect_ratio: str, expected: float) -> None:
    edited = edit(make_source((400, 300)), aspect_ratio=aspect_ratio)

    assert edited.width / edited.height == pytest.approx(expected, rel=0.02)
    assert decode(edited).size == (edited.width, edited.height)
    # A crop, not an upscale: the output fits inside the source.
    assert edited.width <= 400
    assert edited.height <= 300


def test_without_an_aspect_ratio_the_source_shape_is_kept() -> None:
    edited = edit(make_source((320, 200)))

    assert (edited.width, edited.height) == (320, 200)


def test_large_sources_are_scaled_down_to_the_cap() -> None:
    edited = edit(make_source((2400, 1200), image_format="JPEG"))

    assert max(edited.width, edited.height) == MAX_SIDE
    assert edited.width / edited.height == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(
    ("output_format", "content_type", "pillow_format"),
    [("jpeg", "image/jpeg", "JPEG"), ("png", "image/png", "PNG")],
)
def test_the_output_is_encoded_as_asked(
    output_format: str, content_type: str, pillow_format: str
) -> None:
    edited = edit(make_source(), output_format=output_format)

    assert edited.content_type == content_type
    assert decode(edited).format == pillow_format


@pytest.mark.parametrize(
    "source",
    [b"", b"definitely not an image", make_source()[:200]],
    ids=["empty", "text", "truncated png"],
)
def test_an_unreadable_source_raises(source: bytes) -> None:
    with pytest.raises(UnreadableImageError):
        edit(source)


@pytest.mark.parametrize(
    "options", [{"output_format": "webp"}, {"aspect_ratio": "5:4"}], ids=["format", "ratio"]
)
def test_unknown_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(options)))):
        edit(make_source(), **options)


@pytest.mark.parametrize("how", ["blackout", "flagged", "unchanged", "wrong_size"])
def test_an_output_fault_spoils_the_edit_the_way_its_name_says(how: str) -> None:
    source = make_source((400, 300))
    good = edit(source, aspect_ratio="16:9", output_format="jpeg")
    spoiled = spoil(good, source, how, "jpeg")
    image = decode(spoiled)
    if how == "blackout":
        assert image.size == (good.width, good.height)
        assert image.convert("L").getextrema() == (0, 0)
    elif how == "flagged":
        assert spoiled == good  # only the provider's flag says anything
    elif how == "unchanged":
        assert image.size == (400, 300)
        original = Image.open(io.BytesIO(source)).convert("RGB")
        assert max(ImageStat.Stat(ImageChops.difference(image.convert("RGB"), original)).mean) < 3
    else:
        assert image.width == image.height == min(good.width, good.height)


def test_output_faults_are_drawn_in_order_and_cost_no_draw_when_off() -> None:
    calm = FaultInjector(FaultConfig(seed=1))
    assert [calm.output_fault() for _ in range(5)] == [None] * 5
    always = FaultInjector(FaultConfig(seed=1, rate_blackout=1.0, rate_unchanged=1.0))
    assert always.output_fault() is OutputFault.BLACKOUT and OutputFault.BLACKOUT.flagged
    assert not OutputFault.UNCHANGED.flagged
