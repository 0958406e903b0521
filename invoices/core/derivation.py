"""A line's derivation: why the line is this amount (billing semantics section 6), in typed parts.

Pricing builds these; the line keeps `as_dict()` of them, which is what `InvoiceLine.derivation`
stores as JSON and what the review desk, the printable invoice, the exports and the tests read
back. Drafts approved long ago hold that JSON, so `as_dict()` is a contract: every key keeps its
name and its place (a key that is absent stays absent, never null).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The JSON form, as stored with the line.
Derivation = dict[str, Any]

NO_CHARGE_NOTE = "non-billable: raw hours shown, no charge"


@dataclass(frozen=True)
class EntriesPart:
    """Every grouped line starts with its entries: how many, their raw minutes, and how many
    each tier classified."""

    entries: int
    raw_minutes: str
    classified_by: dict[str, int]

    def as_dict(self) -> Derivation:
        return {
            "entries": self.entries,
            "raw_minutes": self.raw_minutes,
            "classified_by": dict(self.classified_by),
        }


@dataclass(frozen=True)
class RatePart:
    """The one rate row that priced a time line, and what it is for in words: the row may
    later change or go, and the line must still say what priced it."""

    row: int | str | None  # RateRow.id: a database id here (the rules file uses paths)
    level: int
    level_label: str
    rate: str
    valid_from: str | None
    valid_to: str | None
    target: str

    def as_dict(self) -> Derivation:
        return {
            "row": self.row,
            "level": self.level,
            "level_label": self.level_label,
            "rate": self.rate,
            "from": self.valid_from,
            "to": self.valid_to,
            "for": self.target,
        }


@dataclass(frozen=True)
class RoundingPart:
    """The policy's rounding, as it applied to the line (section 4)."""

    increment_minutes: int
    mode: str
    locus: str
    minimum_minutes: int

    def as_dict(self) -> Derivation:
        return {
            "increment_minutes": self.increment_minutes,
            "mode": self.mode,
            "locus": self.locus,
            "minimum_minutes": self.minimum_minutes,
        }


@dataclass(frozen=True)
class AdjustedEntry:
    """One entry a reviewer wrote down or up (section 10.4), with who and why."""

    entry: int
    kind: str  # "write-down", "write-up" or "adjustment"
    standard_minutes: str
    billed_minutes: str
    by: str
    reason: str

    def as_dict(self) -> Derivation:
        return {
            "entry": self.entry,
            "kind": self.kind,
            "standard_minutes": self.standard_minutes,
            "billed_minutes": self.billed_minutes,
            "by": self.by,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AdjustmentPart:
    """Section 10.4: what the line would have billed (the standard value), the difference
    (signed, e.g. "-150.00"), and each adjusted entry."""

    standard_minutes: str
    standard_quantity: str
    standard_amount: str
    amount: str
    entries: tuple[AdjustedEntry, ...]
    summary: str

    def as_dict(self) -> Derivation:
        return {
            "standard_minutes": self.standard_minutes,
            "standard_quantity": self.standard_quantity,
            "standard_amount": self.standard_amount,
            "amount": self.amount,
            "entries": [entry.as_dict() for entry in self.entries],
            "summary": self.summary,
        }


@dataclass(frozen=True)
class TimePart:
    """How a time line's quantity and price came about (sections 4 and 5)."""

    billed_minutes: str
    rate: RatePart
    multiplier: str
    unit_price: str
    rounding: RoundingPart
    arithmetic: str
    adjustment: AdjustmentPart | None = None

    def as_dict(self) -> Derivation:
        out: Derivation = {
            "billed_minutes": self.billed_minutes,
            "rate": self.rate.as_dict(),
            "multiplier": self.multiplier,
            "unit_price": self.unit_price,
            "rounding": self.rounding.as_dict(),
            "arithmetic": self.arithmetic,
        }
        if self.adjustment is not None:
            out["adjustment"] = self.adjustment.as_dict()
        return out


@dataclass(frozen=True)
class NoChargePart:
    """A no-charge line's: its raw hours are shown and nothing is charged."""

    note: str = NO_CHARGE_NOTE

    def as_dict(self) -> Derivation:
        return {"note": self.note}


@dataclass(frozen=True)
class GroupedLineDerivation:
    """A line made of entries (time or no charge): its entries, how it was priced, and the
    months of late time on it (section 10.1), if any."""

    entries: EntriesPart
    priced: TimePart | NoChargePart
    late_time_from: tuple[str, ...] = ()

    def as_dict(self) -> Derivation:
        out = {**self.entries.as_dict(), **self.priced.as_dict()}
        if self.late_time_from:
            out["late_time_from"] = list(self.late_time_from)
        return out


@dataclass(frozen=True)
class ManualLineDerivation:
    """Section 10.4: a manual line as the reviewer entered it."""

    id: int
    kind: str
    by: str
    reason: str
    note: str
    arithmetic: str

    def as_dict(self) -> Derivation:
        return {
            "manual_line": {"id": self.id, "kind": self.kind, "by": self.by, "reason": self.reason},
            "note": self.note,
            "arithmetic": self.arithmetic,
        }


@dataclass(frozen=True)
class CapDerivation:
    """Section 7: a project's not-to-exceed cap and what it took off."""

    project: str
    amount: str
    billed: str
    excess: str
    arithmetic: str

    def as_dict(self) -> Derivation:
        return {
            "cap": {
                "project": self.project,
                "amount": self.amount,
                "billed": self.billed,
                "excess": self.excess,
            },
            "arithmetic": self.arithmetic,
        }


@dataclass(frozen=True)
class DiscountDerivation:
    """Section 7: the client's discount and the base it is a percentage of."""

    percent: str
    base: str
    arithmetic: str

    def as_dict(self) -> Derivation:
        return {
            "discount": {"percent": self.percent, "base": self.base},
            "arithmetic": self.arithmetic,
        }


LineDerivation = GroupedLineDerivation | ManualLineDerivation | CapDerivation | DiscountDerivation
