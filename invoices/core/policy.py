"""A client's billing policy (billing semantics section 3) as a plain value."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class _Choices(StrEnum):
    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(m.value, m.value.replace("_", " ")) for m in cls]


class RoundingMode(_Choices):
    UP = "up"
    NEAREST = "nearest"
    DOWN = "down"


class RoundingLocus(_Choices):
    ENTRY = "entry"
    LINE = "line"


class GroupBy(_Choices):
    ENTRY = "entry"
    CATEGORY = "category"
    CATEGORY_PERSON = "category_person"
    TASK = "task"


@dataclass(frozen=True)
class Policy:
    currency: str
    increment_minutes: int = 0
    rounding_mode: RoundingMode = RoundingMode.UP
    rounding_locus: RoundingLocus = RoundingLocus.ENTRY
    minimum_minutes: int = 0
    non_billable_categories: frozenset[str] = frozenset()
    billing_codes: dict[str, str] = field(default_factory=dict)
    require_billing_codes: bool = False
    rate_multipliers: dict[str, Decimal] = field(default_factory=dict)
    discount_percent: Decimal = Decimal(0)
    caps: dict[str, Decimal] = field(default_factory=dict)  # project code -> amount
    group_lines_by: GroupBy = GroupBy.ENTRY
    show_non_billable: bool = False
    # Hold entries the tracker reports as not approved (section 10.2).
    bill_approved_only: bool = False
    invoice_per_project: bool = False
    payment_terms_days: int = 30

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy stored on each invoice, so the rules that priced it stay visible."""
        return {
            "currency": self.currency,
            "rounding": {
                "increment_minutes": self.increment_minutes,
                "mode": str(self.rounding_mode),
                "locus": str(self.rounding_locus),
            },
            "minimum_minutes": self.minimum_minutes,
            "non_billable_categories": sorted(self.non_billable_categories),
            "billing_codes": dict(sorted(self.billing_codes.items())),
            "require_billing_codes": self.require_billing_codes,
            "rate_multipliers": {k: str(v) for k, v in sorted(self.rate_multipliers.items())},
            "discount_percent": str(self.discount_percent),
            "caps": {k: str(v) for k, v in sorted(self.caps.items())},
            "group_lines_by": str(self.group_lines_by),
            "show_non_billable": self.show_non_billable,
            "bill_approved_only": self.bill_approved_only,
            "invoice_per_project": self.invoice_per_project,
            "payment_terms_days": self.payment_terms_days,
        }
