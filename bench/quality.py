"""How often the quality gate is wrong, and what its checks cost: ``python -m bench.quality``.

The corpus is real photographs shipped inside the scikit-image wheel (read from the
installed package, no network) and the emulators' own outputs:

- *edits* (every check should pass): each photograph with the edits FLUX.1 Kontext is
  asked for most (a colour grade, black and white, relighting, a white background, an
  object added or removed, a new sky, a cartoon style, a recrop to 16:9, a mirror), and
  the emulators' edits of it and of the demo catalog's product photos. An edit that left
  the photograph as it was (brightening a black-and-white silhouette) is not an edit and
  is left out, by measuring it;
- *sources handed back* (``unchanged`` should fail): each photograph re-encoded as JPEG at
  quality 85 and 60, as PNG, shrunk and enlarged, as a provider would hand it back;
- *blank outputs* (``blank`` should fail): black, white and grey fields, with and without
  the sensor-like noise a safety checker's dark frame has.

A false positive is an edit that fails any check; a miss is a handed-back source or a
blank output that passes.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps, ImageStat

from emulators.imaging import apply_edit
from worker.dev.samples import PRODUCTS, product_photo
from worker.values import quality

#: The photographs of scikit-image's ``data`` folder used (every colour and grey one).
PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock_motion", "coffee", "coins",
    "color", "grass", "gravel", "horse", "hubble_deep_field", "ihc", "logo", "microaneurysms",
    "moon", "motorcycle_left", "motorcycle_right", "page", "phantom", "retina", "rocket", "text",
)  # fmt: skip

#: Prompts for the emulators' edits.
PROMPTS = ("add a red hat", "make it night", "put it on a beach", "as an oil painting")

#: An edit that changes the mean pixel by less than this share of 255 did nothing.
NO_OP = 0.005


def photo(name: str) -> bytes:
    """One photograph's file from the installed scikit-image package."""
    root = importlib.resources.files("skimage") / "data"
    for extension in ("png", "jpg"):
        candidate = root / f"{name}.{extension}"
        if candidate.is_file():
            return candidate.read_bytes()
    raise FileNotFoundError(f"scikit-image has no sample photograph {name!r}")


def encode(image: Image.Image, fmt: str = "JPEG", quality_: int = 90) -> bytes:
    """``image`` as a file's bytes."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, quality=quality_)
    return buffer.getvalue()


def _is_colour(image: Image.Image) -> bool:
    return max(ImageStat.Stat(image.convert("HSV")).mean[1:2]) > 10


def edits(image: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    """The edits Kontext is asked for most, done by hand."""
    w, h = image.size
    grade = ImageOps.colorize(ImageOps.grayscale(image), (40, 10, 0), (255, 220, 160))
    yield "warm grade", Image.blend(image, grade, 0.3)
    if _is_colour(image):
        yield "black and white", ImageOps.grayscale(image).convert("RGB")
    yield "relight", ImageEnhance.Brightness(image).enhance(1.25)
    white = image.copy()
    mask = Image.new("L", image.size, 255)
    ImageDraw.Draw(mask).ellipse((w * 0.2, h * 0.15, w * 0.8, h * 0.85), fill=0)
    white.paste((255, 255, 255), mask=mask)
    yield "white background", white
    added = image.copy()
    ImageDraw.Draw(added).ellipse((w * 0.6, h * 0.1, w * 0.85, h * 0.35), fill=(200, 30, 30))
    yield "object added", added
    small = image.copy()
    ImageDraw.Draw(small).rectangle((w * 0.45, h * 0.45, w * 0.62, h * 0.62), fill=(30, 120, 200))
    yield "small object added", small
    removed = image.copy()
    box = (int(w * 0.3), int(h * 0.3), int(w * 0.55), int(h * 0.55))
    border = ImageStat.Stat(image.crop((box[0], box[1] - 4, box[2], box[1]))).median
    removed.paste(tuple(int(v) for v in border[:3]), box)
    yield "object removed", removed
    sky = image.copy()
    top = image.crop((0, 0, w, h // 3))
    sky.paste(ImageOps.colorize(ImageOps.grayscale(top), (20, 40, 120), (180, 210, 255)), (0, 0))
    yield "new sky", sky
    yield "cartoon style", ImageOps.posterize(image.filter(ImageFilter.SMOOTH_MORE), 3)
    yield "recrop to 16:9", ImageOps.fit(image, (1024, 576))  # asked with aspect_ratio 16:9
    yield "mirrored", ImageOps.mirror(image)


def handed_back(image: Image.Image) -> Iterator[tuple[str, bytes]]:
    """The source as a provider might hand it back untouched."""
    yield "jpeg 85", encode(image, quality_=85)
    yield "jpeg 60", encode(image, quality_=60)
    yield "png", encode(image, "PNG")
    shrunk = image.copy()
    shrunk.thumbnail((384, 384))
    yield "shrunk", encode(shrunk)
    yield "enlarged", encode(image.resize((image.width * 2, image.height * 2)))


def blanks(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """Near-uniform frames, as safety checkers return them."""
    for name, level in (("black", 0), ("dark", 12), ("grey", 128), ("white", 255)):
        yield name, encode(Image.new("RGB", (1024, 768), (level,) * 3))
        noisy = Image.new("L", (1024, 768))
        noisy.putdata([max(0, min(255, level + rng.randint(-2, 2))) for _ in range(1024 * 768)])
        yield f"{name} with noise", encode(noisy)


@dataclass
class Tally:
    """How many of a kind were judged right, and which were not."""

    total: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Share judged wrongly."""
        return len(self.wrong) / self.total if self.total else 0.0


@dataclass
class Measurement:
    """False positives over edits; misses over handed-back sources and blank outputs."""

    edits: Tally = field(default_factory=Tally)
    handed_back: Tally = field(default_factory=Tally)
    blank: Tally = field(default_factory=Tally)

    def as_json(self) -> dict[str, object]:
        """The figures for the README and the benchmark's JSON."""
        return {
            "edits": self.edits.total,
            "false_positives": self.edits.wrong,
            "false_positive_rate": round(self.edits.rate, 4),
            "handed_back": self.handed_back.total,
            "handed_back_missed": self.handed_back.wrong,
            "blank": self.blank.total,
            "blank_missed": self.blank.wrong,
        }


def _judge(
    tally: Tally,
    label: str,
    data: bytes,
    source: quality.SourceFacts | None,
    wrong: Callable[[quality.Report], bool],
    thresholds: quality.Thresholds,
) -> quality.Report:
    ratio = "16:9" if label.endswith("16:9") else None
    report = quality.check(data, quality.Expected("jpeg", ratio), source, None, thresholds)
    tally.total += 1
    if wrong(report):
        tally.wrong.append(label)
    return report


def _changed(before: Image.Image, after: Image.Image) -> float:
    """Mean absolute pixel change, as a share of 255, at the source's size."""
    resized = after.resize(before.size) if after.size != before.size else after
    return sum(ImageStat.Stat(ImageChops.difference(before, resized)).mean) / (3 * 255)


def measure(thresholds: quality.Thresholds | None = None) -> Measurement:
    """Run every check over the corpus at ``thresholds`` (the defaults when None)."""
    thresholds = thresholds or quality.Thresholds()
    result = Measurement()
    rng = random.Random(7)  # noqa: S311 - noise for test images, not secrets
    failing_any: Callable[[quality.Report], bool] = lambda r: r.failed is not None  # noqa: E731
    for name in PHOTOS:
        data = photo(name)
        source = quality.source_facts(data)
        image = Image.open(io.BytesIO(data)).convert("RGB")
        for edit, edited in edits(image):
            if _changed(image, edited) < NO_OP:
                continue
            _judge(result.edits, f"{name}: {edit}", encode(edited), source, failing_any, thresholds)
        for prompt in PROMPTS:
            out = apply_edit(data, prompt, seed=1, aspect_ratio=None, output_format="jpeg")
            label = f"{name}: emulator '{prompt}'"
            _judge(result.edits, label, out.data, source, failing_any, thresholds)
        for how, returned in handed_back(image):
            _judge(
                result.handed_back,
                f"{name}: {how}",
                returned,
                source,
                lambda r: r.checks["unchanged"] != "fail",
                thresholds,
            )
    for index, product in enumerate(PRODUCTS):
        data = product_photo(product, index)
        source = quality.source_facts(data)
        for prompt in PROMPTS:
            out = apply_edit(data, prompt, seed=index, aspect_ratio="4:3", output_format="jpeg")
            label = f"{product}: emulator '{prompt}'"
            expected = quality.Expected("jpeg", "4:3")
            report = quality.check(out.data, expected, source, None, thresholds)
            result.edits.total += 1
            if report.failed is not None:
                result.edits.wrong.append(label)
    for how, frame in blanks(rng):
        _judge(result.blank, how, frame, None, lambda r: r.checks["blank"] != "fail", thresholds)
    return result


def cpu_ms_per_output(repeat: int = 20) -> float:
    """CPU milliseconds the gate spends on one 1024x1024 JPEG output (median of ``repeat``)."""
    source_bytes = photo("astronaut")
    source = quality.source_facts(source_bytes)
    output = apply_edit(
        source_bytes, "add a red hat", seed=1, aspect_ratio=None, output_format="jpeg"
    )
    image = Image.open(io.BytesIO(output.data)).resize((1024, 1024))
    data = encode(image)
    times = []
    for _ in range(repeat):
        started = time.process_time()
        quality.check(data, quality.Expected("jpeg", "1:1"), source, None, quality.Thresholds())
        times.append((time.process_time() - started) * 1000)
    return sorted(times)[len(times) // 2]


def main() -> None:
    """Print the measurement at the default thresholds, as JSON."""
    figures = measure().as_json()
    figures["cpu_ms_per_1024px_output"] = round(cpu_ms_per_output(), 1)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
