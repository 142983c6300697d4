"""Sample product photos drawn with Pillow, for the demo and the tests."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

PRODUCTS = (
    "mug",
    "sneaker",
    "backpack",
    "lamp",
    "watch",
    "bottle",
    "chair",
    "headphones",
    "vase",
    "teapot",
    "camera",
    "plant pot",
)
PALETTE = (
    (214, 69, 65),
    (52, 120, 190),
    (240, 180, 40),
    (60, 160, 110),
    (140, 90, 170),
    (30, 30, 30),
)


def product_photo(name: str, seed: int, size: tuple[int, int] = (512, 512)) -> bytes:
    """A JPEG of a simple 'product' on a studio backdrop: a shape, a shadow and a label."""
    rng = random.Random(seed)  # noqa: S311 - picture variety, not secrets
    width, height = size
    image = Image.new("RGB", size, (236, 234, 228))
    draw = ImageDraw.Draw(image)
    colour = PALETTE[seed % len(PALETTE)]
    cx, cy = width // 2, height // 2
    w, h = rng.randint(width // 5, width // 3), rng.randint(height // 5, height // 3)
    draw.ellipse((cx - w, cy + h - 12, cx + w, cy + h + 18), fill=(200, 198, 192))
    if seed % 3 == 0:
        draw.ellipse((cx - w, cy - h, cx + w, cy + h), fill=colour)
    elif seed % 3 == 1:
        draw.rounded_rectangle((cx - w, cy - h, cx + w, cy + h), radius=24, fill=colour)
    else:
        draw.polygon([(cx, cy - h), (cx + w, cy + h), (cx - w, cy + h)], fill=colour)
    draw.text((16, height - 28), f"SKU-{seed:04d} {name}", fill=(60, 60, 60))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def catalog(count: int) -> list[tuple[str, str, bytes]]:
    """``count`` products as (external id, product name, JPEG bytes)."""
    return [
        (f"SKU-{i:04d}", PRODUCTS[i % len(PRODUCTS)], product_photo(PRODUCTS[i % len(PRODUCTS)], i))
        for i in range(count)
    ]
