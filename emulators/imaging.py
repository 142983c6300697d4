"""A real, cheap, deterministic image edit that the provider emulators return as their output.

The edit is meant to be obvious to a person looking at a demo and to a test comparing pixels:
the image is cropped to the requested aspect ratio, colour graded with a tint derived from the
prompt and seed, framed, and captioned with the prompt. The same inputs always give the same
bytes, so tests and benchmarks can compare outputs exactly.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

#: The aspect ratios FLUX.1 Kontext accepts, as (width, height) proportions.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "21:9": (21, 9),
    "16:9": (16, 9),
    "4:3": (4, 3),
    "3:2": (3, 2),
    "1:1": (1, 1),
    "2:3": (2, 3),
    "3:4": (3, 4),
    "9:16": (9, 16),
    "9:21": (9, 21),
}

#: Output formats by their provider name: (Pillow format, content type, file extension).
OUTPUT_FORMATS: dict[str, tuple[str, str, str]] = {
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
}

# Real Kontext outputs are about one megapixel; editing that much with Pillow would make the
# emulators slower than the latency they are configured with, so the long side is capped.
MAX_SIDE = 1024

# How much of the tinted version is mixed into the original: enough to be seen at a glance,
# little enough that the source is still recognisable.
GRADE_STRENGTH = 0.45


class UnreadableImageError(ValueError):
    """The source bytes are not an image that can be read; send a JPEG, PNG or WebP file."""


@dataclass(frozen=True, slots=True)
class EditedImage:
    """An encoded output image and what a provider reports about it."""

    data: bytes
    content_type: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """The usual file extension for ``content_type`` (``jpg`` or ``png``)."""
        return "png" if self.content_type == "image/png" else "jpg"


@dataclass(frozen=True, slots=True)
class Grade:
    """The look chosen for one prompt and seed: a tint for highlights and one for shadows."""

    light: tuple[int, int, int]
    dark: tuple[int, int, int]


def apply_edit(
    source: bytes,
    prompt: str,
    *,
    seed: int | None,
    aspect_ratio: str | None,
    output_format: str,
    size: tuple[int, int] | None = None,
) -> EditedImage:
    """Edit ``source`` visibly and deterministically, and encode it.

    ``aspect_ratio`` is one of :data:`ASPECT_RATIOS` (``None`` keeps the source's shape);
    ``output_format`` is a key of :data:`OUTPUT_FORMATS`. ``size`` asks for an exact
    ``(width, height)`` instead, for providers that take a size rather than a ratio: the
    source is cropped to its shape and scaled to it, past :data:`MAX_SIDE` if need be. Raises
    :class:`UnreadableImageError` when ``source`` is not an image and :class:`ValueError` for
    an unknown ratio or format, a size that is not positive, or both a ratio and a size.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {sorted(OUTPUT_FORMATS)}")
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"aspect_ratio must be one of {sorted(ASPECT_RATIOS)}")
    if size is not None and (aspect_ratio is not None or min(size) < 1):
        raise ValueError("size must be a positive (width, height), and not given with a ratio")
    grade = grade_for(prompt, seed)
    opened = _open(source)
    if size is None:
        image = _fit(opened, aspect_ratio)
    else:
        image = ImageOps.fit(opened, size, method=Image.Resampling.LANCZOS)
    image = _tint(image, grade)
    _frame(image, grade)
    _caption(image, prompt)
    return _encode(image, output_format)


def edit_all(
    source: bytes,
    prompt: str,
    seed: int,
    count: int,
    spoiled: str | None,
    *,
    aspect_ratio: str | None,
    output_format: str,
    size: tuple[int, int] | None = None,
) -> list[EditedImage]:
    """``count`` edits of ``source``, each one's seed following from the first, each
    spoiled as ``spoiled`` says (see :func:`spoil`; None: as they should be)."""
    edited = [
        apply_edit(
            source,
            prompt,
            seed=seed + index,
            aspect_ratio=aspect_ratio,
            output_format=output_format,
            size=size,
        )
        for index in range(count)
    ]
    if spoiled is None:
        return edited
    return [spoil(image, source, spoiled, output_format) for image in edited]


class KontextArguments(Protocol):
    """The fields of a fal-style Kontext input (fal's and Runflow's are the same)."""

    @property
    def prompt(self) -> str: ...
    @property
    def num_images(self) -> int: ...
    @property
    def aspect_ratio(self) -> str | None: ...
    @property
    def output_format(self) -> str: ...


def edit_arguments(
    arguments: KontextArguments, source: bytes, seed: int, spoiled: str | None
) -> list[EditedImage]:
    """Every image a fal-style request asks for; each one's seed follows from the first."""
    return edit_all(
        source,
        arguments.prompt,
        seed,
        arguments.num_images,
        spoiled,
        aspect_ratio=arguments.aspect_ratio,
        output_format=arguments.output_format,
    )


def spoil(image: EditedImage, source: bytes, how: str, output_format: str) -> EditedImage:
    """``image`` gone wrong in one of the ways a real provider's outputs do.

    ``how`` is ``blackout`` (black, as a safety checker leaves a flagged image), ``flagged``
    (left as it is: only the provider's flag says anything), ``unchanged`` (the source
    handed back, re-encoded in the format asked for) or ``wrong_size`` (a square crop).
    """
    if how == "flagged":
        return image
    if how == "blackout":
        return _encode(Image.new("RGB", (image.width, image.height)), output_format)
    if how == "unchanged":
        return _encode(_open(source), output_format)
    if how == "wrong_size":
        side = min(image.width, image.height)
        with Image.open(io.BytesIO(image.data)) as opened:
            square = ImageOps.fit(opened.convert("RGB"), (side, side))
        return _encode(square, output_format)
    raise ValueError(f"unknown output fault {how!r}")


def grade_for(prompt: str, seed: int | None) -> Grade:
    """Derive a stable, saturated pair of tints from ``prompt`` and ``seed``."""
    digest = hashlib.sha256(f"{prompt}\n{seed}".encode()).digest()
    # Pushing one channel up and another down guarantees a strong colour cast, whatever the
    # hash bytes are; which channels is also taken from the hash.
    strong, weak = digest[0] % 3, (digest[0] % 3 + 1 + digest[1] % 2) % 3
    light = [140 + digest[2] % 80, 140 + digest[3] % 80, 140 + digest[4] % 80]
    light[strong], light[weak] = 255, 40 + digest[5] % 60
    dark = [value // 6 for value in light]
    return Grade(light=(light[0], light[1], light[2]), dark=(dark[0], dark[1], dark[2]))


def _open(source: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(source)) as opened:
            # load() forces the decode here, so truncated files fail now and not mid-edit.
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise UnreadableImageError(str(exc)) from exc
    return image.convert("RGB")


def _fit(image: Image.Image, aspect_ratio: str | None) -> Image.Image:
    if aspect_ratio is not None:
        ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
        width = min(image.width, image.height * ratio_w // ratio_h) or 1
        height = min(image.height, image.width * ratio_h // ratio_w) or 1
        image = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _tint(image: Image.Image, grade: Grade) -> Image.Image:
    toned = ImageOps.colorize(ImageOps.grayscale(image), black=grade.dark, white=grade.light)
    return Image.blend(image, toned, GRADE_STRENGTH)


def _frame(image: Image.Image, grade: Grade) -> None:
    width = max(2, min(image.size) // 32)
    ImageDraw.Draw(image).rectangle(
        (0, 0, image.width - 1, image.height - 1), outline=grade.light, width=width
    )


def _caption(image: Image.Image, prompt: str) -> None:
    size = max(8, image.height // 22)
    font = _font(size)
    draw = ImageDraw.Draw(image)
    margin = max(2, min(image.size) // 32) + size // 2
    text = _fit_text(draw, font, " ".join(prompt.split()), image.width - 2 * margin)
    band_top = image.height - margin - size * 2
    draw.rectangle((0, band_top, image.width, image.height - margin), fill=(0, 0, 0))
    draw.text((margin, band_top + size // 2), text, fill=(255, 255, 255), font=font)


_fonts = threading.local()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The caption font at ``size``, loaded once per thread.

    Loading parses the font file, and an emulator draws thousands of captions in a few
    sizes. Each thread keeps its own, because a FreeType face must not be used by two
    threads at once (edits run in a thread pool).
    """
    if not hasattr(_fonts, "by_size"):
        _fonts.by_size = {}
    loaded: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = _fonts.by_size
    if size not in loaded:
        loaded[size] = ImageFont.load_default(size=size)
    return loaded[size]


def _fit_text(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    width: int,
) -> str:
    """Shorten ``text`` with an ellipsis until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    # Binary search on the kept length: prompts can be long, and measuring each shorter
    # candidate in turn would be quadratic.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…"


def _encode(image: Image.Image, output_format: str) -> EditedImage:
    pillow_format, content_type, _ = OUTPUT_FORMATS[output_format]
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, quality=90)
    return EditedImage(
        data=buffer.getvalue(),
        content_type=content_type,
        width=image.width,
        height=image.height,
    )
