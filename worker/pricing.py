"""What an image costs when the provider does not say: the published list prices."""

from __future__ import annotations

from decimal import Decimal

#: USD per output image, by canonical model.
PRICE_PER_IMAGE: dict[str, Decimal] = {
    "flux-kontext-pro": Decimal("0.04"),
    "flux-kontext-max": Decimal("0.08"),
}


def list_price(model: str, images: int) -> Decimal:
    """The list price of ``images`` outputs of ``model``."""
    return PRICE_PER_IMAGE.get(model, Decimal("0")) * images
