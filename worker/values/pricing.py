"""What an image costs when the provider does not say: the published list prices."""

from __future__ import annotations

from decimal import Decimal

#: USD per output image, by (provider, canonical model), from the providers' price pages.
PRICE_PER_IMAGE: dict[tuple[str, str], Decimal] = {
    ("fal", "flux-kontext-pro"): Decimal("0.04"),
    ("fal", "flux-kontext-max"): Decimal("0.08"),
    ("runware", "flux-kontext-pro"): Decimal("0.04"),
    ("runflow", "flux-kontext-pro"): Decimal("0.04"),
}


def list_price(provider: str, model: str, images: int) -> Decimal:
    """The list price of ``images`` outputs of ``model`` at ``provider`` (0 when unlisted)."""
    return PRICE_PER_IMAGE.get((provider, model), Decimal("0")) * images
