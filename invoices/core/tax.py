"""Billing semantics section 12: which tax code a line has, its taxable base after the caps and
the discount, and the tax per line or per invoice, rounded once.

Pure Python and Decimal only: drafting loads the firm's codes into a `TaxPolicy`, pricing calls
`tax_invoice` with the priced lines, and the result (per line and per rate) is stored as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, Protocol

from invoices.core.rounding import currency_places, round_money

ZERO = Decimal(0)
# Mirrors `invoices.core.pricing.SUBTOTAL_KINDS` (tests/test_tax.py keeps them in step): pricing
# imports this module, so it cannot be imported from here.
TAXABLE_KINDS = frozenset({"time", "fixed_fee", "expense", "credit"})
MANUAL_KINDS = frozenset({"fixed_fee", "expense", "credit"})
CAP_KIND = "cap"
DISCOUNT_KIND = "discount"


class TaxLocus(StrEnum):
    """Section 12.4: where tax is rounded."""

    LINE = "line"
    INVOICE = "invoice"


@dataclass(frozen=True)
class TaxRate:
    """One tax a code charges; `percent` None means QuickBooks computes it."""

    name: str
    percent: Decimal | None
    compound: bool = False


@dataclass(frozen=True)
class TaxCode:
    """A firm's tax code: its taxes in the order they are charged (section 12.1)."""

    name: str
    rates: tuple[TaxRate, ...]
    quickbooks_id: str = ""

    @property
    def per_quickbooks(self) -> bool:
        return any(rate.percent is None for rate in self.rates)


@dataclass(frozen=True)
class TaxPolicy:
    """A client's tax settings as drafting loads them. An override mapped to None exempts."""

    locus: TaxLocus = TaxLocus.INVOICE
    default: TaxCode | None = None
    by_category: Mapping[str, TaxCode | None] = field(default_factory=dict)
    by_kind: Mapping[str, TaxCode | None] = field(default_factory=dict)

    def code_for(self, kind: str, category: str | None) -> tuple[TaxCode | None, str]:
        """Section 12.2: the line's code and why (kind override, category override, default)."""
        if kind not in TAXABLE_KINDS:
            return None, f"a {kind.replace('_', ' ')} line has no tax"
        if kind in MANUAL_KINDS and kind in self.by_kind:
            return self.by_kind[kind], f"override for {kind.replace('_', ' ')} lines"
        if category is not None and category in self.by_category:
            return self.by_category[category], f"override for category {category}"
        if self.default is None:
            return None, "the client has no tax code"
        return self.default, "the client's tax code"

    def snapshot(self) -> dict[str, Any]:
        return {
            "locus": str(self.locus),
            "default": self.default.name if self.default else None,
            "by_category": {k: v.name if v else None for k, v in sorted(self.by_category.items())},
            "by_kind": {k: v.name if v else None for k, v in sorted(self.by_kind.items())},
        }


class TaxableLine(Protocol):
    """What tax needs of a priced line (pricing's `LineDraft` has these)."""

    @property
    def kind(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def category(self) -> str | None: ...
    @property
    def project(self) -> int | None: ...


@dataclass(frozen=True)
class RateTax:
    """One tax of one line (or of one code on the invoice): its base, rate and tax."""

    rate: TaxRate
    base: Decimal
    tax: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        percent = self.rate.percent
        return {
            "name": self.rate.name,
            "rate": None if percent is None else str(percent),
            "compound": self.rate.compound,
            "base": str(self.base),
            "tax": None if self.tax is None else str(self.tax),
        }


@dataclass(frozen=True)
class LineTax:
    """A taxable-kind line's tax: its code (None: exempt), its base and, per line, its taxes."""

    code: TaxCode | None
    reason: str
    base: Decimal
    shares: tuple[str, ...]
    taxes: tuple[RateTax, ...] = ()

    @property
    def amount(self) -> Decimal | None:
        """The line's tax when it is rounded per line; None when the invoice rounds it."""
        known = [t.tax for t in self.taxes if t.tax is not None]
        return sum(known, ZERO) if self.taxes else None

    def as_dict(self, currency: str) -> dict[str, Any]:
        taxes = [t.as_dict() for t in self.taxes]
        return {
            "code": self.code.name if self.code else None,
            "why": self.reason,
            "base": str(self.base),
            "base_shares": list(self.shares),
            "taxes": taxes,
            "arithmetic": "; ".join(_arithmetic(t, currency) for t in self.taxes)
            or ("tax on the invoice per code" if self.code else "no tax"),
        }


@dataclass(frozen=True)
class SummaryRow:
    """Section 12.5: one rate of one code on the invoice."""

    code: str
    quickbooks_id: str
    rate: RateTax

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "quickbooks_id": self.quickbooks_id, **self.rate.as_dict()}


@dataclass(frozen=True)
class InvoiceTax:
    locus: TaxLocus
    lines: tuple[LineTax | None, ...]
    summary: tuple[SummaryRow, ...]
    total: Decimal

    @classmethod
    def none(cls) -> InvoiceTax:
        return cls(TaxLocus.INVOICE, (), (), ZERO)

    @property
    def per_quickbooks(self) -> bool:
        return any(row.rate.tax is None for row in self.summary)

    def line(self, index: int) -> LineTax | None:
        return self.lines[index] if index < len(self.lines) else None

    def summary_json(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.summary]


def _arithmetic(tax: RateTax, currency: str) -> str:
    if tax.rate.percent is None:
        return f"{tax.rate.name}: computed by QuickBooks on {tax.base}"
    return f"{tax.rate.name}: round({tax.base} x {tax.rate.percent} / 100) = {tax.tax} {currency}"


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """`total` split in proportion to positive `weights`, in minor units, the remainders one unit
    at a time to the largest fractions (earlier first on a tie): the parts add up to `total`."""
    places = currency_places(currency)
    units = int(total.scaleb(places))
    whole = sum((w for w in weights if w > 0), ZERO)
    if whole <= 0:
        return [ZERO for _ in weights]
    sign = -1 if units < 0 else 1
    exact = [Fraction(abs(units)) * Fraction(max(w, ZERO)) / Fraction(whole) for w in weights]
    parts = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[: abs(units) - sum(parts)]:
        parts[i] += 1
    return [Decimal(sign * p).scaleb(-places) for p in parts]


def taxable_bases(
    lines: Sequence[TaxableLine], currency: str
) -> tuple[list[Decimal], list[list[str]]]:
    """Section 12.3: each line's amount less its shares of the caps and the discount, and the
    shares in words for the derivation (non-taxable kinds get 0)."""
    bases = [ln.amount if ln.kind in TAXABLE_KINDS else ZERO for ln in lines]
    notes: list[list[str]] = [[] for _ in lines]
    for cap in (ln for ln in lines if ln.kind == CAP_KIND):
        weights = [
            b if ln.project == cap.project else ZERO for ln, b in zip(lines, bases, strict=True)
        ]
        _share(cap.amount, weights, bases, notes, "cap", currency)
    for discount in (ln for ln in lines if ln.kind == DISCOUNT_KIND):
        _share(discount.amount, list(bases), bases, notes, "discount", currency)
    return bases, notes


def _share(
    amount: Decimal,
    weights: list[Decimal],
    bases: list[Decimal],
    notes: list[list[str]],
    what: str,
    currency: str,
) -> None:
    for i, part in enumerate(allocate(amount, weights, currency)):
        if part:
            bases[i] += part
            notes[i].append(f"{what} share {part}")


def _rate_taxes(rates: Sequence[TaxRate], base: Decimal, currency: str) -> tuple[RateTax, ...]:
    """Section 12.1/12.4: each tax of a code on `base`; a compound one on base + earlier taxes."""
    out: list[RateTax] = []
    earlier = ZERO
    for rate in rates:
        on = base + earlier if rate.compound else base
        if rate.percent is None:
            out.append(RateTax(rate, on, None))
            continue
        # The one rounding of a tax (section 12.4), per line or on the code's summed base.
        tax = round_money(on * rate.percent / 100, currency)
        earlier += tax
        out.append(RateTax(rate, on, tax))
    return tuple(out)


def tax_invoice(
    lines: Sequence[TaxableLine], *, taxes: TaxPolicy | None, currency: str
) -> InvoiceTax:
    """Section 12: every line's code and base, and the tax per line or per code on the invoice."""
    if taxes is None:
        return InvoiceTax.none()
    bases, notes = taxable_bases(lines, currency)
    per_line = taxes.locus == TaxLocus.LINE
    line_taxes: list[LineTax | None] = []
    for line, base, note in zip(lines, bases, notes, strict=True):
        code, reason = taxes.code_for(line.kind, line.category)
        if line.kind not in TAXABLE_KINDS:
            line_taxes.append(None)
            continue
        computed = _rate_taxes(code.rates, base, currency) if code and per_line else ()
        line_taxes.append(LineTax(code, reason, base, tuple(note), computed))
    summary = _line_summary(line_taxes) if per_line else _invoice_summary(line_taxes, currency)
    total = sum((row.rate.tax for row in summary if row.rate.tax is not None), ZERO)
    return InvoiceTax(taxes.locus, tuple(line_taxes), summary, total)


def _codes_in_order(line_taxes: Sequence[LineTax | None]) -> list[TaxCode]:
    codes: dict[str, TaxCode] = {}
    for lt in line_taxes:
        if lt is not None and lt.code is not None:
            codes.setdefault(lt.code.name, lt.code)
    return list(codes.values())


def _invoice_summary(line_taxes: Sequence[LineTax | None], currency: str) -> tuple[SummaryRow, ...]:
    """Per invoice: each code's bases summed, its taxes rounded once on the sum."""
    rows: list[SummaryRow] = []
    for code in _codes_in_order(line_taxes):
        base = sum(
            (lt.base for lt in line_taxes if lt and lt.code and lt.code.name == code.name), ZERO
        )
        for tax in _rate_taxes(code.rates, base, currency):
            rows.append(SummaryRow(code.name, code.quickbooks_id, tax))
    return tuple(rows)


def _line_summary(line_taxes: Sequence[LineTax | None]) -> tuple[SummaryRow, ...]:
    """Per line: each code's rounded line taxes (and bases) added up, per rate."""
    rows: list[SummaryRow] = []
    for code in _codes_in_order(line_taxes):
        ours = [lt for lt in line_taxes if lt and lt.code and lt.code.name == code.name]
        for i, rate in enumerate(code.rates):
            parts = [lt.taxes[i] for lt in ours]
            base = sum((p.base for p in parts), ZERO)
            known = [p.tax for p in parts if p.tax is not None]
            tax = None if rate.percent is None else sum(known, ZERO)
            rows.append(SummaryRow(code.name, code.quickbooks_id, RateTax(rate, base, tax)))
    return tuple(rows)
