"""Classified entries -> invoice lines and totals (billing semantics sections 4, 5, 6 and 7),
with a reviewer's adjustments (10.4): written-down or written-up entries and manual lines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Protocol

from invoices.core.derivation import (
    AdjustedEntry,
    AdjustmentPart,
    CapDerivation,
    Derivation,
    DiscountDerivation,
    EntriesPart,
    GroupedLineDerivation,
    ManualLineDerivation,
    NoChargePart,
    RatePart,
    RoundingPart,
    TimePart,
)
from invoices.core.errors import BillingError
from invoices.core.policy import GroupBy, Policy, RoundingLocus
from invoices.core.rates import RateMatch, RateRow, RateTable
from invoices.core.rounding import (
    percent_of,
    round_money,
    round_quantity,
    round_rate,
    round_to_increment,
)
from invoices.core.tax import InvoiceTax, TaxPolicy, tax_invoice

# The values below are what the database stores (`InvoiceLine.Kind`, `Flag` and
# `InvoiceEntry.State` in invoices.models); tests/test_structure.py keeps the two in step.
# StrEnums, so a member is its stored string (`LineKind.TIME == "time"`).


class LineKind(StrEnum):
    TIME = "time"
    NO_CHARGE = "no_charge"
    CAP = "cap"
    DISCOUNT = "discount"
    # Section 10.4: lines a reviewer adds to a draft.
    FIXED_FEE = "fixed_fee"
    EXPENSE = "expense"
    CREDIT = "credit"
    # Section 13.2: what a retainer pays of the invoice.
    DRAWDOWN = "drawdown"


MANUAL_KINDS = (LineKind.FIXED_FEE, LineKind.EXPENSE, LineKind.CREDIT)
# What the subtotal sums (section 7.1): billed time and manual lines, before caps and discount.
SUBTOTAL_KINDS = (LineKind.TIME, *MANUAL_KINDS)


class InvoiceFlag(StrEnum):
    """The flags pricing raises (the models' `Flag` has more, raised elsewhere)."""

    CAP_APPLIED = "cap_applied"
    ZERO_TOTAL = "zero_total"
    PENDING = "pending"
    LATE_TIME = "late_time"
    HELD = "held"


class PlacementState(StrEnum):
    """Where an entry went: on a line (billed, no charge) or on none (pending, held)."""

    BILLED = "billed"
    NO_CHARGE = "no_charge"
    PENDING = "pending"
    # Section 10.2: invoiced or not approved in the tracker; never blocks approval.
    HELD = "held"


ZERO = Decimal(0)
# What groups entries into one line: the kind, the project, and the grouping's part.
GroupKey = tuple[object, ...]


@dataclass(frozen=True)
class Adjustment:
    """Section 10.4: a reviewer's write-down or write-up of one entry. `billed_seconds` is what
    the entry bills, exactly (no minimum, no increment: the reviewer set the billed time);
    `source_seconds` is the entry's duration when it was adjusted."""

    billed_seconds: int
    source_seconds: int
    reason: str
    made_by: str

    @property
    def direction(self) -> str:
        if self.billed_seconds < self.source_seconds:
            return "write-down"
        if self.billed_seconds > self.source_seconds:
            return "write-up"
        return "adjustment"

    @property
    def described(self) -> str:
        return f"{'an' if self.direction == 'adjustment' else 'a'} {self.direction}"


@dataclass(frozen=True)
class ManualCharge:
    """Section 10.4: a manual line (fixed fee, expense, credit) of the invoice's period."""

    id: int
    kind: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    reason: str
    made_by: str
    category: str | None = None
    billing_code: str = ""
    project: int | None = None
    project_code: str = ""
    project_name: str = ""


@dataclass(frozen=True)
class PricedEntry:
    """Everything pricing needs to know of one classified entry, as plain values."""

    id: int
    date: dt.date
    seconds: int
    person: int
    person_name: str
    role: str
    project: int
    project_code: str
    project_name: str
    task: str
    category: str | None
    category_name: str
    description: str
    source_label: str
    billable: bool
    billing_code: str
    needs_review: bool
    review_reason: str = ""
    # Section 10.2: why the entry is held ("invoiced in Harvest"); empty when it is not.
    hold_reason: str = ""
    # Section 10.1: the first day of the approved period a late entry is from.
    late_from: dt.date | None = None
    # Section 10.4: the reviewer's write-down or write-up, if any.
    adjustment: Adjustment | None = None


@dataclass
class EntryPlacement:
    entry_id: int
    state: PlacementState
    raw_seconds: int
    billed_seconds: int = 0
    pending_reason: str = ""
    late_from: dt.date | None = None


@dataclass
class LineDraft:
    kind: str  # a LineKind, or a manual charge's kind (checked against MANUAL_KINDS)
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    category: str | None = None
    billing_code: str = ""
    project: int | None = None
    person: int | None = None
    first_date: dt.date | None = None
    project_code: str = ""
    project_name: str = ""
    entries: list[EntryPlacement] = field(default_factory=list)
    # The JSON form of its `invoices.core.derivation` parts, as stored with the line.
    derivation: Derivation = field(default_factory=dict)
    sort_key: tuple[object, ...] = field(default=(), repr=False, compare=False)


@dataclass
class InvoiceDraft:
    lines: list[LineDraft]
    pending: list[EntryPlacement]
    subtotal: Decimal
    adjustments: Decimal
    discount: Decimal
    total: Decimal
    flags: list[InvoiceFlag]
    # Held entries (section 10.2): listed like pending ones, never blocking approval.
    held: list[EntryPlacement] = field(default_factory=list)
    # Section 12: each line's tax code, base and tax, and the invoice's tax per rate.
    tax: InvoiceTax = field(default_factory=InvoiceTax.none)

    @property
    def placements(self) -> list[EntryPlacement]:
        return [p for line in self.lines for p in line.entries] + self.pending + self.held


class PricingError(BillingError, ValueError):
    """The entries and manual lines cannot make an invoice (a negative total, a manual line of
    the wrong sign or kind); the message names what to change."""


def billed_minutes(seconds: int, policy: Policy) -> Fraction:
    """Section 4 steps 1-3 for one entry: exact raw minutes, the minimum, then the increment
    (step 3 only with `locus: entry`; with `locus: line` the line rounds once instead)."""
    minutes = max(Fraction(seconds, 60), Fraction(policy.minimum_minutes))
    if policy.rounding_locus == RoundingLocus.ENTRY:
        minutes = round_to_increment(minutes, policy.increment_minutes, policy.rounding_mode)
    return minutes


@dataclass
class _Group:
    kind: LineKind
    entries: list[PricedEntry] = field(default_factory=list)
    # What each entry bills: section 4's result, or its adjustment's duration (10.4).
    minutes: list[Fraction] = field(default_factory=list)
    # Section 4's result for each entry, adjusted or not: the standard value.
    standard: list[Fraction] = field(default_factory=list)
    match: RateMatch | None = None
    multiplier: Decimal = Decimal(1)
    unit_price: Decimal = ZERO
    billing_code: str = ""


def _group_part(entry: PricedEntry, group_by: GroupBy) -> GroupKey:
    if group_by == GroupBy.ENTRY:
        return ("entry", entry.id)
    if group_by == GroupBy.CATEGORY:
        return ("category", entry.category)
    if group_by == GroupBy.CATEGORY_PERSON:
        return ("category_person", entry.category, entry.person)
    return ("task", entry.task.casefold())


def _describe(entry: PricedEntry, group_by: GroupBy) -> str:
    if group_by == GroupBy.ENTRY:
        return entry.description
    if group_by == GroupBy.CATEGORY_PERSON:
        return f"{entry.category_name} - {entry.person_name}"
    if group_by == GroupBy.CATEGORY:
        return entry.category_name
    return entry.task or entry.category_name


class EngagementTerms(Protocol):
    """Section 13's terms (`invoices.core.engagements.Engagement`), applied at their places."""

    def policy(self, policy: Policy) -> Policy: ...
    def before_caps(self, lines: list[LineDraft], policy: Policy) -> list[LineDraft]: ...
    def after_discount(self, lines: list[LineDraft], policy: Policy) -> list[LineDraft]: ...


def price_invoice(
    entries: Iterable[PricedEntry],
    *,
    policy: Policy,
    rates: RateTable,
    client: int,
    manual: Sequence[ManualCharge] = (),
    taxes: TaxPolicy | None = None,
    engagement: EngagementTerms | None = None,
) -> InvoiceDraft:
    """One invoice's lines and totals from its entries and manual lines, per the billing
    semantics: time lines, then manual lines (10.4), then caps and the discount (section 7)."""
    policy = engagement.policy(policy) if engagement else policy  # section 13.3
    placed = _Placed()
    for entry in entries:
        _place(entry, placed, policy=policy, rates=rates, client=client)

    lines = [_build_line(group, policy) for group in placed.groups.values()]
    lines.sort(key=lambda line: line.sort_key)
    lines.extend(_manual_line(charge, policy) for charge in manual)
    lines = engagement.before_caps(lines, policy) if engagement else lines  # 13.1
    lines.extend(_adjustment_lines(lines, policy))
    lines = engagement.after_discount(lines, policy) if engagement else lines  # 13.2

    totals = _Totals.of(lines, policy)
    tax = tax_invoice(lines, taxes=taxes, currency=policy.currency)
    for line, line_tax in zip(lines, tax.lines, strict=False):
        if line_tax is not None:
            line.derivation["tax"] = line_tax.as_dict(policy.currency)
    flags = _flags(lines, placed, totals)
    return InvoiceDraft(
        lines,
        placed.pending,
        totals.subtotal,
        totals.adjustments,
        totals.discount,
        totals.total,
        flags,
        placed.held,
        tax=tax,
    )


@dataclass
class _Placed:
    """Where an invoice's entries went: into line groups, pending (section 5), held (10.2)."""

    groups: dict[GroupKey, _Group] = field(default_factory=dict)
    pending: list[EntryPlacement] = field(default_factory=list)
    held: list[EntryPlacement] = field(default_factory=list)
    # Some entry is billed time (a zero total is then flagged).
    has_billable: bool = False


def _place(
    entry: PricedEntry, placed: _Placed, *, policy: Policy, rates: RateTable, client: int
) -> None:
    """One entry: held, pending, a no-charge line's (or dropped), or a time line's."""
    if entry.hold_reason:
        placed.held.append(_set_aside(entry, PlacementState.HELD, entry.hold_reason))
        return
    if entry.needs_review:
        placed.pending.append(_set_aside(entry, PlacementState.PENDING, entry.review_reason))
        return
    part = _group_part(entry, policy.group_lines_by)
    if not entry.billable:
        if policy.show_non_billable:
            _add_no_charge(placed.groups, entry, part)
        return
    changed = _changed_since_adjustment(entry)
    if changed:
        # Section 10.4: the write-down is kept, and the reviewer confirms it again.
        placed.pending.append(_set_aside(entry, PlacementState.PENDING, changed))
        return
    match = rates.resolve(
        day=entry.date,
        client=client,
        project=entry.project,
        person=entry.person,
        role=entry.role,
    )
    if match is None:
        placed.pending.append(_set_aside(entry, PlacementState.PENDING, _no_rate_reason(entry)))
        return
    placed.has_billable = True
    _add_time(placed.groups, entry, match, part, policy)


def _set_aside(entry: PricedEntry, state: PlacementState, reason: str) -> EntryPlacement:
    """A pending or held entry: on no line, with why."""
    return EntryPlacement(
        entry.id, state, entry.seconds, pending_reason=reason, late_from=entry.late_from
    )


def _changed_since_adjustment(entry: PricedEntry) -> str:
    """Why an adjusted entry waits for the reviewer again (its hours changed at the source
    since); empty when it does not."""
    adjustment = entry.adjustment
    if adjustment is None or adjustment.source_seconds == entry.seconds:
        return ""
    return (
        f"hours changed at the source after {adjustment.described} "
        f"(was {_hours_str(adjustment.source_seconds)} h, "
        f"now {_hours_str(entry.seconds)} h)"
    )


def _no_rate_reason(entry: PricedEntry) -> str:
    return (
        f"no rate: none of the 9 rate levels covers {entry.person_name} "
        f"on {entry.project_code or entry.project_name} on {entry.date.isoformat()}"
    )


def _add_no_charge(groups: dict[GroupKey, _Group], entry: PricedEntry, part: GroupKey) -> None:
    key = (LineKind.NO_CHARGE, entry.project, part)
    group = groups.setdefault(key, _Group(LineKind.NO_CHARGE))
    group.entries.append(entry)
    group.minutes.append(Fraction(entry.seconds, 60))
    group.standard.append(Fraction(entry.seconds, 60))


def _add_time(
    groups: dict[GroupKey, _Group],
    entry: PricedEntry,
    match: RateMatch,
    part: GroupKey,
    policy: Policy,
) -> None:
    multiplier = policy.rate_multipliers.get(entry.category or "", Decimal(1))
    unit_price = round_rate(match.row.rate * multiplier)
    # The rate row is part of the key (not only its value) so each line's derivation
    # names the one row that priced all of its entries.
    key = (LineKind.TIME, entry.project, unit_price, match.row.id, entry.billing_code, part)
    group = groups.get(key)
    if group is None:
        group = groups[key] = _Group(
            LineKind.TIME,
            match=match,
            multiplier=multiplier,
            unit_price=unit_price,
            billing_code=entry.billing_code,
        )
    group.entries.append(entry)
    standard = billed_minutes(entry.seconds, policy)
    group.standard.append(standard)
    adjustment = entry.adjustment
    group.minutes.append(
        standard if adjustment is None else Fraction(adjustment.billed_seconds, 60)
    )


@dataclass(frozen=True)
class _Totals:
    """Section 7.1: the subtotal, the caps' adjustments, the discount and the total."""

    subtotal: Decimal
    adjustments: Decimal
    discount: Decimal
    total: Decimal

    @classmethod
    def of(cls, lines: Sequence[LineDraft], policy: Policy) -> _Totals:
        subtotal = sum((ln.amount for ln in lines if ln.kind in SUBTOTAL_KINDS), ZERO)
        adjustments = sum(
            (ln.amount for ln in lines if ln.kind in (LineKind.CAP, LineKind.DRAWDOWN)), ZERO
        )
        discount = sum((ln.amount for ln in lines if ln.kind == LineKind.DISCOUNT), ZERO)
        total = subtotal + adjustments + discount
        if total < 0:
            raise PricingError(
                f"total {total} {policy.currency} is negative; check the credits, the discount "
                "and the caps"
            )
        return cls(subtotal, adjustments, discount, total)


def _flags(lines: Sequence[LineDraft], placed: _Placed, totals: _Totals) -> list[InvoiceFlag]:
    flags = []
    if any(ln.kind == LineKind.CAP for ln in lines):
        flags.append(InvoiceFlag.CAP_APPLIED)
    if placed.has_billable and totals.total == 0:
        flags.append(InvoiceFlag.ZERO_TOTAL)
    if placed.pending:
        flags.append(InvoiceFlag.PENDING)
    if any(p.late_from for line in lines for p in line.entries):
        flags.append(InvoiceFlag.LATE_TIME)
    if placed.held:
        flags.append(InvoiceFlag.HELD)
    return flags


def _build_line(group: _Group, policy: Policy) -> LineDraft:
    first = min(group.entries, key=lambda e: (e.date, e.id))
    description = _describe(first, policy.group_lines_by)
    raw_seconds = sum(e.seconds for e in group.entries)
    person_name = (
        first.person_name
        if policy.group_lines_by in (GroupBy.ENTRY, GroupBy.CATEGORY_PERSON)
        else ""
    )
    person = first.person if person_name else None
    if group.kind == LineKind.NO_CHARGE:
        line = _no_charge_line(group, first, description=description, person=person)
        priced: TimePart | NoChargePart = NoChargePart()
    else:
        line, priced = _time_line(
            group, first, policy, description=description, person=person, raw_seconds=raw_seconds
        )
    line.derivation = GroupedLineDerivation(
        entries=_entries_part(group, raw_seconds),
        priced=priced,
        late_time_from=_late_time_from(group),
    ).as_dict()
    # Section 6: by first entry date, then person name, then category name.
    line.sort_key = (
        first.date,
        person_name.casefold(),
        first.category_name.casefold(),
        line.description.casefold(),
        first.id,
    )
    line.project_code = first.project_code
    line.project_name = first.project_name
    return line


def _entries_part(group: _Group, raw_seconds: int) -> EntriesPart:
    """How many entries, their raw minutes, and how many each tier classified."""
    sources: dict[str, int] = {}
    for entry in group.entries:
        sources[entry.source_label] = sources.get(entry.source_label, 0) + 1
    return EntriesPart(
        entries=len(group.entries),
        raw_minutes=_minutes_str(Fraction(raw_seconds, 60)),
        classified_by=dict(sorted(sources.items())),
    )


def _late_time_from(group: _Group) -> tuple[str, ...]:
    # Section 10.1: shown with its own date, flagged as late time from its period.
    return tuple(sorted({f"{e.late_from:%Y-%m}" for e in group.entries if e.late_from}))


def _no_charge_line(
    group: _Group, first: PricedEntry, *, description: str, person: int | None
) -> LineDraft:
    placements = [
        EntryPlacement(e.id, PlacementState.NO_CHARGE, e.seconds, late_from=e.late_from)
        for e in group.entries
    ]
    raw_seconds = sum(e.seconds for e in group.entries)
    return LineDraft(
        LineKind.NO_CHARGE,
        f"{description} (No charge)",
        round_quantity(Fraction(raw_seconds, 3600)),
        ZERO,
        ZERO,
        category=first.category,
        project=first.project,
        first_date=first.date,
        person=person,
        entries=placements,
    )


def _time_line(
    group: _Group,
    first: PricedEntry,
    policy: Policy,
    *,
    description: str,
    person: int | None,
    raw_seconds: int,
) -> tuple[LineDraft, TimePart]:
    """A time line and how it was priced."""
    entry_minutes = _time_line_minutes(group, policy)
    quantity = round_quantity(entry_minutes / 60)
    amount = round_money(quantity * group.unit_price, policy.currency)
    placements = [
        EntryPlacement(
            e.id,
            PlacementState.BILLED,
            e.seconds,
            billed_seconds=_whole_seconds(m),
            late_from=e.late_from,
        )
        for e, m in zip(group.entries, group.minutes, strict=True)
    ]
    adjusted = any(e.adjustment is not None for e in group.entries)
    priced = TimePart(
        billed_minutes=_minutes_str(entry_minutes),
        rate=_rate_part(group, first),
        multiplier=str(group.multiplier),
        unit_price=str(group.unit_price),
        rounding=RoundingPart(
            increment_minutes=policy.increment_minutes,
            mode=str(policy.rounding_mode),
            locus=str(policy.rounding_locus),
            minimum_minutes=policy.minimum_minutes,
        ),
        arithmetic=f"{quantity} h x {group.unit_price} = {amount} {policy.currency}",
        adjustment=_adjustment_part(group, quantity, amount, policy) if adjusted else None,
    )
    line = LineDraft(
        LineKind.TIME,
        description,
        quantity,
        group.unit_price,
        amount,
        category=first.category,
        billing_code=group.billing_code,
        project=first.project,
        person=person,
        first_date=first.date,
        entries=placements,
    )
    return line, priced


def _time_line_minutes(group: _Group, policy: Policy) -> Fraction:
    """With `locus: line` the line rounds once what the entries' rounding left; an adjusted
    entry's billed time is added as the reviewer set it, never rounded (section 10.4)."""
    adjusted = [e.adjustment is not None for e in group.entries]
    pairs = list(zip(group.minutes, adjusted, strict=True))
    unadjusted = _line_minutes([m for m, a in pairs if not a], policy)
    return unadjusted + sum((m for m, a in pairs if a), Fraction(0))


def _rate_part(group: _Group, first: PricedEntry) -> RatePart:
    """The one rate row that priced the line, and what it is for in words: the row may later
    change or go, and the line must still say what priced it."""
    assert group.match is not None  # a time line's group always has its rate
    row = group.match.row
    return RatePart(
        row=row.id,
        level=int(group.match.level),
        level_label=group.match.level.label,
        rate=str(row.rate),
        valid_from=row.valid_from.isoformat() if row.valid_from else None,
        valid_to=row.valid_to.isoformat() if row.valid_to else None,
        target=_rate_target(row, first),
    )


def _line_minutes(minutes: Sequence[Fraction], policy: Policy) -> Fraction:
    """The billed minutes of a line's (unadjusted) entries: their sum, rounded once to the
    increment with `locus: line` (section 4)."""
    total = sum(minutes, Fraction(0))
    if minutes and policy.rounding_locus == RoundingLocus.LINE and policy.increment_minutes:
        total = round_to_increment(total, policy.increment_minutes, policy.rounding_mode)
    return total


def _adjustment_part(
    group: _Group, quantity: Decimal, amount: Decimal, policy: Policy
) -> AdjustmentPart:
    """Section 10.4: what the line would have billed (the standard value), the adjustment
    (signed), and each adjusted entry with who adjusted it and why."""
    standard_minutes = _line_minutes(group.standard, policy)
    standard_quantity = round_quantity(standard_minutes / 60)
    standard_amount = round_money(standard_quantity * group.unit_price, policy.currency)
    difference = amount - standard_amount
    entries = tuple(
        AdjustedEntry(
            entry=entry.id,
            kind=entry.adjustment.direction,
            standard_minutes=_minutes_str(standard),
            billed_minutes=_minutes_str(billed),
            by=entry.adjustment.made_by,
            reason=entry.adjustment.reason,
        )
        for entry, standard, billed in zip(
            group.entries, group.standard, group.minutes, strict=True
        )
        if entry.adjustment is not None
    )
    people = ", ".join(sorted({e.by for e in entries}))
    reasons = "; ".join(dict.fromkeys(e.reason for e in entries))
    return AdjustmentPart(
        standard_minutes=_minutes_str(standard_minutes),
        standard_quantity=str(standard_quantity),
        standard_amount=str(standard_amount),
        amount=f"{difference:+}",
        entries=entries,
        summary=f"standard {standard_quantity} h x {group.unit_price} = {standard_amount}; "
        f"adjusted to {quantity} h = {amount} ({difference:+} {policy.currency}) "
        f"by {people}: {reasons}",
    )


def _manual_line(charge: ManualCharge, policy: Policy) -> LineDraft:
    """Section 10.4: a manual line as the reviewer entered it; a credit is negative."""
    if charge.kind not in MANUAL_KINDS:
        raise PricingError(f"manual line {charge.id}: unknown kind {charge.kind!r}")
    if (charge.unit_price > 0) if charge.kind == LineKind.CREDIT else (charge.unit_price < 0):
        raise PricingError(
            f"manual line {charge.id}: a {charge.kind.replace('_', ' ')} of unit price "
            f"{charge.unit_price} has the wrong sign (a credit is negative, others are not)"
        )
    quantity = round_quantity(Fraction(charge.quantity))
    unit_price = round_rate(charge.unit_price)
    amount = round_money(quantity * unit_price, policy.currency)
    kind = charge.kind.replace("_", " ")
    line = LineDraft(
        charge.kind,
        charge.description,
        quantity,
        unit_price,
        amount,
        category=charge.category,
        billing_code=charge.billing_code,
        project=charge.project,
        derivation=ManualLineDerivation(
            id=charge.id,
            kind=charge.kind,
            by=charge.made_by,
            reason=charge.reason,
            note=f"manual line: {kind}, by {charge.made_by}, {charge.reason}",
            arithmetic=f"{quantity} x {unit_price} = {amount} {policy.currency}",
        ).as_dict(),
    )
    line.project_code, line.project_name = charge.project_code, charge.project_name
    return line


def _adjustment_lines(lines: Sequence[LineDraft], policy: Policy) -> list[LineDraft]:
    adjustments: list[LineDraft] = []
    by_project: dict[str, tuple[str, int | None, Decimal]] = {}
    for line in lines:
        # Caps apply after a reviewer's adjustments (10.4): a project's manual lines count.
        if line.kind not in SUBTOTAL_KINDS or line.project is None:
            continue
        name, project, total = by_project.get(
            line.project_code, (line.project_name, line.project, ZERO)
        )
        by_project[line.project_code] = (name, project, total + line.amount)
    cap_total = ZERO
    for code, cap in sorted(policy.caps.items()):
        if code not in by_project:
            continue
        name, project, billed = by_project[code]
        if billed > cap:
            excess = billed - cap
            cap_total -= excess
            adjustments.append(
                LineDraft(
                    LineKind.CAP,
                    f"Not-to-exceed adjustment ({name})",
                    Decimal(1),
                    -excess,
                    -excess,
                    project=project,
                    derivation=CapDerivation(
                        project=code,
                        amount=str(cap),
                        billed=str(billed),
                        excess=str(excess),
                        arithmetic=f"-({billed} - {cap}) = {-excess} {policy.currency}",
                    ).as_dict(),
                )
            )
    if policy.discount_percent > 0:
        subtotal = sum((ln.amount for ln in lines if ln.kind in SUBTOTAL_KINDS), ZERO)
        base = subtotal + cap_total
        discount = -percent_of(base, policy.discount_percent, policy.currency)
        adjustments.append(
            LineDraft(
                LineKind.DISCOUNT,
                f"Discount ({policy.discount_percent.normalize():f}%)",
                Decimal(1),
                discount,
                discount,
                derivation=DiscountDerivation(
                    percent=str(policy.discount_percent),
                    base=str(base),
                    arithmetic=f"-round({base} x {policy.discount_percent} / 100) = "
                    f"{discount} {policy.currency}",
                ).as_dict(),
            )
        )
    return adjustments


def _whole_seconds(minutes: Fraction) -> int:
    seconds = minutes * 60
    if seconds.denominator != 1:
        raise PricingError(f"billed duration {minutes} min is not a whole number of seconds")
    return int(seconds)


def _rate_target(row: RateRow, entry: PricedEntry) -> str:
    """A row that priced an entry is for that entry's project and person (or role)."""
    parts = []
    if row.project is not None:
        parts.append(f"project {entry.project_code or entry.project_name}")
    if row.person is not None:
        parts.append(f"person {entry.person_name}")
    if row.role:
        parts.append(f"role {row.role}")
    if parts:
        return " + ".join(parts)
    return "client" if row.client is not None else "firm default"


def _hours_str(seconds: int) -> str:
    """Hours as a reviewer reads them: 5400 s -> "1.5" (4 places at most, no trailing zeros)."""
    return f"{round_quantity(Fraction(seconds, 3600)).normalize():f}"


def _minutes_str(minutes: Fraction) -> str:
    if minutes.denominator == 1:
        return str(minutes.numerator)
    return str(round_quantity(minutes))
