"""What an output image is: its format, MIME type and size, read from its bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


class NotAnImage(Exception):
    """The bytes are not an image editq can read."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image's MIME type, file extension and pixel size."""

    content_type: str
    extension: str
    width: int
    height: int


def inspect(data: bytes) -> ImageInfo:
    """Identify ``data`` without decoding every pixel."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise NotAnImage(str(exc)) from exc
    mime = _MIME.get(fmt)
    if mime is None:
        raise NotAnImage(f"unsupported image format {fmt or 'unknown'}")
    return ImageInfo(mime, _EXT[mime], width, height)


def extension_for(content_type: str) -> str:
    """File extension for a MIME type (``bin`` when unknown)."""
    return _EXT.get(content_type, "bin")
