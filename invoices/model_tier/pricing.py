"""What a request's tokens cost, in USD, from the published prices per million tokens."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal

from integrations.claude import Usage
from invoices.core.rounding import round_half_up

# The package's logger: records are named invoices.model_tier whichever module logs them.
log = logging.getLogger(__package__)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_write: Decimal  # 5-minute cache writes (the only TTL this tier uses)
    cache_read: Decimal


def _price(inp: str, out: str, write: str | None = None, read: str | None = None) -> ModelPrice:
    i = Decimal(inp)
    return ModelPrice(
        i,
        Decimal(out),
        Decimal(write) if write else i * Decimal("1.25"),
        Decimal(read) if read else i * Decimal("0.1"),
    )


# api-notes 5.9 (docs snapshot, late 2026). Haiku 5.5 is priced at its <= 100k-token prompt
# tier: a classification request is a few thousand tokens.
PRICES: dict[str, ModelPrice] = {
    "claude-haiku-5-5": _price("0.10", "0.50", "0.125", "0.01"),
    "claude-sonnet-5-5": _price("2", "10", read="0.10"),
    "claude-opus-5-5": _price("4", "20", read="0.20"),
    "claude-fable-5-2": _price("8", "40"),
    "claude-fable-5-1": _price("10", "50"),
    "claude-sonnet-5": _price("2", "10"),
    "claude-opus-5": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-8": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-7": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-6": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-5": _price("5", "25", "6.25", "0.50"),
    "claude-sonnet-4-6": _price("3", "15", "3.75", "0.30"),
    "claude-sonnet-4-5": _price("3", "15", "3.75", "0.30"),
    "claude-haiku-4-5": _price("1", "5", "1.25", "0.10"),
}
BATCH_DISCOUNT = Decimal("0.5")
MILLION = Decimal(1_000_000)
COST_PLACES = 6


def price_of(model: str) -> ModelPrice | None:
    """The price of a model id, dated snapshots included (claude-haiku-4-5-20251001)."""
    return PRICES.get(model) or PRICES.get(re.sub(r"-\d{8}$", "", model))


def cost_usd(*, model: str, usage: Usage, batch: bool = False) -> Decimal:
    """What `usage` costs. The Message Batches API halves every token price (caching still
    applies inside batches). An unknown model costs 0 here and is logged."""
    price = price_of(model)
    if price is None:
        log.warning("no price known for model %s: its cost is recorded as 0", model)
        return Decimal(0)
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    ) / MILLION
    if batch:
        total *= BATCH_DISCOUNT
    return round_half_up(total, COST_PLACES)
