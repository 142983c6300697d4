"""What an image costs when the provider does not say: the published list prices (or the
ones ``EDITQ_PRICES`` sets)."""

from __future__ import annotations

from collections.abc import Mapping
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


def price_key(key: str) -> tuple[str, str]:
    """``provider:model`` as a key of :data:`PRICE_PER_IMAGE`; ValueError when it is not."""
    provider, sep, model = key.partition(":")
    if not sep or not provider or not model:
        raise ValueError(f"{key!r} is not provider:model (for instance runware:flux-kontext-pro)")
    return provider, model


def use_prices(prices: Mapping[str, Decimal]) -> None:
    """Use these list prices (``EDITQ_PRICES``, ``provider:model`` keys) in this process."""
    PRICE_PER_IMAGE.update({price_key(key): price for key, price in prices.items()})
