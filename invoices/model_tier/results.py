"""What a model-tier run reports, and the one error that stops it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from integrations.claude import Usage
from invoices.errors import BillingError


class ModelTierError(BillingError):
    """The run stopped: the model cannot be used as configured (e.g. the key is refused)."""


@dataclass
class ModelTierSummary:
    skipped: str = ""
    run_id: int | None = None
    entries: int = 0
    distinct_notes: int = 0
    requests: int = 0
    decided: int = 0
    needs_review: int = 0
    unavailable: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    batch_id: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"model tier skipped: {self.skipped}"
        if not self.entries:
            return "model tier: nothing to ask"
        u = self.usage
        return (
            f"model tier: {self.entries} entries ({self.distinct_notes} distinct notes) in "
            f"{self.requests} request(s): {self.decided} decided, {self.needs_review} need "
            f"review ({self.unavailable} model unavailable); tokens: {u.input_tokens} input, "
            f"{u.cache_read_tokens} cache read, {u.cache_write_tokens} cache write, "
            f"{u.output_tokens} output; ${self.cost_usd}"
        )
