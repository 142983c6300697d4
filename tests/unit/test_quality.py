"""The quality gate's checks and policy, on generated images (no services)."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

from worker.values import quality
from worker.values.quality import Expected, SourceFacts, Thresholds, check, source_facts
from worker.values.quality_policy import QualityPolicy, action

DEFAULTS = Thresholds()


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=90)
    return buffer.getvalue()


def scene(size: tuple[int, int] = (800, 600), seed: int = 1) -> Image.Image:
    """A busy picture: shapes of many colours on a gradient."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(10, 120)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return image


def run(
    output: bytes,
    *,
    source: SourceFacts | None = None,
    expected: Expected | None = None,
    flagged: bool | None = None,
) -> quality.Report:
    return check(output, expected or Expected("jpeg"), source, flagged, DEFAULTS)


def test_a_real_edit_passes_every_check_and_keeps_its_scores() -> None:
    original = scene()
    edited = original.copy()
    ImageDraw.Draw(edited).rectangle((300, 200, 500, 400), fill=(250, 250, 250))
    report = run(encode(edited), source=source_facts(encode(original)))
    assert report.failed is None
    assert set(report.checks.values()) == {"pass", "skipped"}
    assert report.checks["unchanged"] == "pass" and report.checks["size"] == "pass"
    assert report.scores["distance"] > 0 or report.scores["color_difference"] > 0.04
    assert (report.scores["width"], report.scores["height"]) == (800, 600)
    assert report.to_json()["passed"] is True


def test_a_black_or_near_uniform_output_is_blank() -> None:
    black = encode(Image.new("RGB", (1024, 768)))
    assert run(black).failed == "blank"
    rng = random.Random(3)
    noisy = Image.new("L", (512, 512))
    noisy.putdata([20 + rng.randint(-2, 2) for _ in range(512 * 512)])
    report = run(encode(noisy))
    assert report.failed == "blank" and report.scores["stddev"] <= DEFAULTS.blank_stddev


def test_the_providers_own_flag_fails_moderated_first_even_when_the_image_looks_fine() -> None:
    report = run(encode(scene()), flagged=True)
    assert report.failed == "moderated"
    assert "moderated" in report.flags
    assert run(encode(scene()), flagged=False).checks["moderated"] == "pass"
    assert run(encode(scene()), flagged=None).checks["moderated"] == "skipped"


def test_the_source_handed_back_is_unchanged_even_re_encoded_and_resized() -> None:
    original = scene()
    facts = source_facts(encode(original, "PNG"))
    for returned in (
        encode(original),
        encode(original.resize((1024, 768))),
        encode(original.resize((400, 300)), "PNG"),
    ):
        report = run(returned, source=facts)
        assert report.checks["unchanged"] == "fail", report.scores


def test_a_colour_edit_that_keeps_the_structure_is_not_unchanged() -> None:
    original = scene()
    facts = source_facts(encode(original))
    greyed = original.convert("L").convert("RGB")
    report = run(encode(greyed), source=facts)
    assert report.checks["unchanged"] == "pass"
    assert report.scores["color_difference"] > DEFAULTS.unchanged_color


def test_a_very_different_output_is_flagged_subject_lost_but_not_failed() -> None:
    facts = source_facts(encode(scene(seed=1)))
    report = run(encode(scene(seed=99)), source=facts)
    assert report.failed is None
    assert "subject_lost" in report.flags


@pytest.mark.parametrize(
    ("size", "ratio", "verdict"),
    [
        ((1392, 752), "16:9", "pass"),  # FLUX.1 Kontext's own 16:9 bucket
        ((1184, 880), "4:3", "pass"),
        ((1024, 1024), "16:9", "fail"),
        ((1248, 832), "4:3", "fail"),  # 3:2 for 4:3
    ],
)
def test_the_shape_must_be_the_ratio_asked_within_kontexts_rounding(
    size: tuple[int, int], ratio: str, verdict: str
) -> None:
    report = run(encode(scene(size)), expected=Expected("jpeg", ratio))
    assert report.checks["size"] == verdict
    assert report.scores["expected"] == ratio


def test_without_a_ratio_the_shape_follows_the_source_or_its_nearest_kontext_ratio() -> None:
    facts = source_facts(encode(scene((1000, 500))))  # 2:1, between 16:9 and 21:9
    assert run(encode(scene((1000, 500), seed=5)), source=facts).checks["size"] == "pass"
    assert run(encode(scene((1392, 752), seed=5)), source=facts).checks["size"] == "pass"
    assert run(encode(scene((800, 800), seed=5)), source=facts).checks["size"] == "fail"
    assert run(encode(scene((800, 800), seed=5)), source=None).checks["size"] == "skipped"


def test_an_exact_size_must_be_met_to_the_pixel() -> None:
    exact = Expected("jpeg", exact_size=(1392, 752))
    assert run(encode(scene((1392, 752))), expected=exact).checks["size"] == "pass"
    report = run(encode(scene((1392, 750))), expected=exact)
    assert report.failed == "size" and report.scores["expected"] == "1392x752"


def test_a_truncated_file_does_not_decode_though_its_header_reads() -> None:
    whole = encode(scene())
    report = run(whole[: len(whole) // 2])
    assert report.failed == "decodes"
    assert report.checks["blank"] == "skipped"
    assert run(b"not an image").failed == "decodes"


def test_a_png_for_a_jpeg_request_is_the_wrong_format() -> None:
    report = run(encode(scene(), "PNG"))
    assert report.failed == "format" and report.scores["format"] == "png"
    assert run(encode(scene(), "PNG"), expected=Expected("png")).failed is None


def test_source_facts_survive_the_job_row() -> None:
    facts = source_facts(encode(scene()))
    assert SourceFacts.from_json(facts.to_json()) == facts
    with pytest.raises(quality.UnreadableSource):
        source_facts(b"\x89PNG\r\n\x1a\n broken")


@pytest.mark.parametrize(
    ("on_failure", "failed", "used", "expected"),
    [
        ("by_check", "moderated", 0, "fail"),
        ("by_check", "blank", 0, "fail"),
        ("by_check", "unchanged", 0, "retry"),
        ("by_check", "unchanged", 1, "fail"),  # the one retry is spent
        ("by_check", "size", 0, "retry"),
        ("fail", "unchanged", 0, "fail"),
        ("retry", "moderated", 0, "retry"),
        ("accept", "blank", 5, "accept"),
    ],
)
def test_the_policy_decides_what_a_failed_check_does(
    on_failure: str, failed: str, used: int, expected: str
) -> None:
    policy = QualityPolicy.from_json({"on_failure": on_failure}, QualityPolicy())
    assert action(policy, failed, used) == expected


def test_a_job_without_a_policy_takes_the_default() -> None:
    default = QualityPolicy("accept", 3)
    assert QualityPolicy.from_json(None, default) == default
    assert QualityPolicy.from_json({"on_failure": "fail"}, default) == QualityPolicy("fail", 3)
