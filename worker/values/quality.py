"""The quality gate's checks: pure functions over an output's bytes, its source and the request.

Every output is checked in finalize, before its job may succeed, the same way whichever
provider made it:

- ``decodes``: every pixel decodes (a truncated file fails here, not in a customer's shop);
- ``format``: it is the format asked for (``jpeg`` or ``png``);
- ``size``: its shape is the aspect ratio asked for (or the source's, when none was) within
  the provider's rounding, or exactly the width x height editq sent (Runware);
- ``blank``: it is not near-uniform (what a safety checker puts in place of a flagged
  image), judged by the pixel statistics of a thumbnail;
- ``moderated``: the provider did not flag it (fal's ``has_nsfw_concepts``, Runware's
  ``NSFWContent``);
- ``unchanged``: it is not the source handed back. Both the perceptual hash (structure) and
  a 16x16 thumbnail (colour) must be within a hair of the source's, so a colour grade or a
  black-and-white edit, which keep the structure, still count as edits.

A very large hash distance (the subject probably lost) is a flag, not a failure. Every
threshold is a :class:`Thresholds` field (an ``EDITQ_QUALITY_*`` setting); the defaults were
chosen by measurement over the emulators' outputs and real photographs (``bench/quality.py``,
and the README's table).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError

from worker import faults

#: Which check failed -> the stable error code a job fails (or is retried) with.
CHECK_CODES: Mapping[str, str] = {
    "moderated": faults.CONTENT_MODERATED,
    "decodes": faults.QUALITY_UNDECODABLE,
    "format": faults.QUALITY_WRONG_FORMAT,
    "blank": faults.QUALITY_BLANK,
    "unchanged": faults.QUALITY_UNCHANGED,
    "size": faults.QUALITY_WRONG_SIZE,
}

#: The order checks are reported in, and which one names a failure when several fail: the
#: provider's own verdict first, then the most basic fault.
CHECKS: tuple[str, ...] = tuple(CHECK_CODES)

#: Side (pixels) of the square the perceptual hash is taken over: a 256-bit hash.
HASH_SIZE = 16
#: Side of the colour thumbnail kept of a source, to tell a colour edit from no edit.
THUMB_SIDE = 16
#: About the longest side the measures are taken at; a thumbnail says as much.
_STATS_SIDE = 256

#: A request's output format -> the Pillow format it must decode as.
_FORMATS = {"jpeg": "JPEG", "png": "PNG"}

#: The aspect ratios FLUX.1 Kontext produces, as width / height.
KONTEXT_RATIOS: Mapping[str, float] = {
    "21:9": 21 / 9,
    "16:9": 16 / 9,
    "4:3": 4 / 3,
    "3:2": 3 / 2,
    "1:1": 1.0,
    "2:3": 2 / 3,
    "3:4": 3 / 4,
    "9:16": 9 / 16,
    "9:21": 9 / 21,
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where each check draws its line; every field is an ``EDITQ_QUALITY_*`` setting."""

    #: Blank when the largest per-channel standard deviation (0-255) is at most this.
    blank_stddev: float = 3.0
    #: Unchanged needs a hash distance (share of the 256 bits that differ) at most this ...
    unchanged_distance: float = 0.12
    #: ... and a mean colour difference over the 16x16 thumbnails (share of 255) at most this.
    unchanged_color: float = 0.04
    #: A hash distance at least this flags ``subject_lost`` (random images sit near 0.5).
    lost_distance: float = 0.45
    #: How far (in log of width / height) an output's shape may be from the one expected.
    size_tolerance: float = 0.06


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the gate keeps of a job's source image: its size, hash and colour thumbnail."""

    width: int
    height: int
    phash: str
    thumb: str

    def to_json(self) -> dict[str, Any]:
        """The facts as the job row keeps them."""
        return {
            "width": self.width,
            "height": self.height,
            "phash": self.phash,
            "thumb": self.thumb,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceFacts:
        """Facts read back from the job row."""
        return cls(int(data["width"]), int(data["height"]), str(data["phash"]), str(data["thumb"]))


@dataclass(frozen=True, slots=True)
class Expected:
    """What was asked for: the output format, and the shape or exact size."""

    output_format: str
    aspect_ratio: str | None = None
    #: The exact (width, height) editq sent, for a provider that takes a size (Runware).
    exact_size: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """One output's checks (``pass``, ``fail`` or ``skipped``), flags and scores."""

    checks: Mapping[str, Literal["pass", "fail", "skipped"]]
    flags: tuple[str, ...] = ()
    scores: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> str | None:
        """The first check that failed, in :data:`CHECKS` order; None when all passed."""
        return next((name for name in CHECKS if self.checks.get(name) == "fail"), None)

    def to_json(self) -> dict[str, Any]:
        """The report as it is stored and shown (``outputs[].quality``)."""
        return {
            "passed": self.failed is None,
            "failed": self.failed,
            "checks": dict(self.checks),
            "flags": list(self.flags),
            "scores": dict(self.scores),
        }


class UnreadableSource(ValueError):
    """The source image cannot be decoded, so nothing can be compared with it."""


def source_facts(data: bytes) -> SourceFacts:
    """Decode a source image once and keep what the checks compare outputs with."""
    try:
        image = _decode(data)
    except _DecodeError as exc:
        raise UnreadableSource(str(exc)) from exc
    rgb = image.convert("RGB")
    small = _reduced(rgb)
    return SourceFacts(rgb.width, rgb.height, _phash(small), _thumb(rgb).tobytes().hex())


def check(
    data: bytes,
    expected: Expected,
    source: SourceFacts | None,
    flagged: bool | None,
    thresholds: Thresholds,
) -> Report:
    """Run every check on one output.

    ``source`` is None when the source could not be read (the ``unchanged`` check and the
    source-shaped ``size`` check are then skipped); ``flagged`` is the provider's own
    moderation flag for this output (None: the provider says nothing).
    """
    checks: dict[str, Literal["pass", "fail", "skipped"]] = {
        "moderated": "skipped" if flagged is None else ("fail" if flagged else "pass")
    }
    flags: list[str] = ["moderated"] if flagged else []
    scores: dict[str, Any] = {}
    try:
        image = _decode(data)
    except _DecodeError as exc:
        checks.update(decodes="fail", format="skipped", blank="skipped")
        checks.update(unchanged="skipped", size="skipped")
        scores["decode_error"] = str(exc)[:200]
        return Report(checks, tuple(flags), scores)
    checks["decodes"] = "pass"
    scores["format"] = (image.format or "unknown").lower()
    wanted = _FORMATS.get(expected.output_format)
    checks["format"] = "pass" if wanted is None or image.format == wanted else "fail"

    rgb = image.convert("RGB")
    scores.update(width=rgb.width, height=rgb.height)
    small = _reduced(rgb)
    stddev, mean = _statistics(small)
    scores.update(stddev=round(stddev, 2), mean=round(mean, 1))
    checks["blank"] = "fail" if stddev <= thresholds.blank_stddev else "pass"

    if source is None:
        checks["unchanged"] = "skipped"
    else:
        distance = _distance(_phash(small), source.phash)
        color = _color_difference(_thumb(rgb).tobytes(), bytes.fromhex(source.thumb))
        scores.update(distance=round(distance, 4), color_difference=round(color, 4))
        same = distance <= thresholds.unchanged_distance and color <= thresholds.unchanged_color
        checks["unchanged"] = "fail" if same else "pass"
        if distance >= thresholds.lost_distance:
            flags.append("subject_lost")

    verdict, wanted_shape = _size_verdict(rgb.size, expected, source, thresholds.size_tolerance)
    checks["size"] = verdict
    if wanted_shape is not None:
        scores["expected"] = wanted_shape
    return Report(checks, tuple(flags), scores)


def nearest_ratio(width: int, height: int) -> str:
    """The Kontext aspect ratio closest in shape to ``width`` x ``height``."""
    target = math.log(width / height)
    return min(KONTEXT_RATIOS, key=lambda name: abs(math.log(KONTEXT_RATIOS[name]) - target))


class _DecodeError(Exception):
    pass


def _decode(data: bytes) -> Image.Image:
    """Every pixel of ``data``, decoded now (``load``), in its stored orientation fixed."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            fmt = opened.format
            image = ImageOps.exif_transpose(opened)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise _DecodeError(str(exc) or type(exc).__name__) from exc
    image.format = fmt
    return image


def _reduced(image: Image.Image) -> Image.Image:
    """``image`` shrunk by a whole factor to about :data:`_STATS_SIDE` on its long side.

    The statistics and the hash are taken from this copy: they need no more detail, and
    shrinking once saves most of the gate's cost. The thumbnail is boxed down from the
    whole image, so that its cells average exactly the same pixels whatever the size.
    """
    factor = max(1, max(image.size) // _STATS_SIDE)
    return image.reduce(factor) if factor > 1 else image


def _statistics(image: Image.Image) -> tuple[float, float]:
    """The largest per-channel standard deviation and the mean brightness."""
    stat = ImageStat.Stat(image)
    return max(stat.stddev), sum(stat.mean) / len(stat.mean)


def _phash(image: Image.Image) -> str:
    # Imported here: imagehash brings numpy and scipy, which only the worker's finalize needs.
    import imagehash  # noqa: PLC0415

    return str(imagehash.phash(image, hash_size=HASH_SIZE))


def _distance(first: str, second: str) -> float:
    """Share of the hash bits that differ between two hex hashes of the same length."""
    bits = len(first) * 4
    if len(second) != len(first):
        return 1.0
    return bin(int(first, 16) ^ int(second, 16)).count("1") / bits


def _thumb(image: Image.Image) -> Image.Image:
    return image.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)


def _color_difference(first: bytes, second: bytes) -> float:
    """The largest difference of one channel of one thumbnail cell, as a share of 255.

    The largest, not the mean: an edit of one corner, or of one colour, must show.
    """
    if len(first) != len(second) or not first:
        return 1.0
    return max(abs(a - b) for a, b in zip(first, second, strict=True)) / 255


def _size_verdict(
    size: tuple[int, int],
    expected: Expected,
    source: SourceFacts | None,
    tolerance: float,
) -> tuple[Literal["pass", "fail", "skipped"], str | None]:
    """Whether ``size`` is what was asked, and what was asked (``1024x576``, ``16:9``)."""
    width, height = size
    if expected.exact_size is not None:
        wanted_w, wanted_h = expected.exact_size
        verdict: Literal["pass", "fail"] = "pass" if size == (wanted_w, wanted_h) else "fail"
        return verdict, f"{wanted_w}x{wanted_h}"
    shape = math.log(width / height)
    if expected.aspect_ratio is not None:
        wanted = math.log(KONTEXT_RATIOS[expected.aspect_ratio])
        return ("pass" if abs(shape - wanted) <= tolerance else "fail"), expected.aspect_ratio
    if source is None:
        return "skipped", None
    # No ratio asked: the source's shape, or the Kontext ratio the provider rounded it to.
    own = math.log(source.width / source.height)
    rounded = math.log(KONTEXT_RATIOS[nearest_ratio(source.width, source.height)])
    fits = min(abs(shape - own), abs(shape - rounded)) <= tolerance
    return ("pass" if fits else "fail"), f"{source.width}:{source.height}"
