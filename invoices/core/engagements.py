"""Fixed fees, retainers and engagement caps (billing semantics section 13), as plain values and
pure rules. `Engagement` is what `price_invoice` is handed for one invoice; it applies its
rules at their places in section 7's order:

1. `policy`: an engagement cap (13.3) with an amount lowers the project's per-period cap to
   what the cap has left after the approved invoices of earlier periods in its window.
2. `before_caps`: a fixed-fee project's time lines become no-charge detail (13.1) and its due
   milestones become fee lines, so the caps and the discount see the fee, not the hours.
3. `after_discount`: a retainer draws down what the invoice owes, up to its balance (13.2).

Every amount is rounded once, by `invoices.core.rounding`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from invoices.core.policy import Policy
from invoices.core.pricing import (
    SUBTOTAL_KINDS,
    EntryPlacement,
    LineDraft,
    LineKind,
    PlacementState,
)
from invoices.core.rounding import percent_of, round_half_up, round_money, round_quantity

ZERO = Decimal(0)
HUNDRED = Decimal(100)
# Section 13.3: the alert levels of an engagement cap, highest first.
ALERT_LEVELS = (100, 80, 50)
PERCENT_PLACES = 1


@dataclass(frozen=True)
class MilestoneTerms:
    """A milestone of a fixed fee that no approved invoice has billed yet."""

    id: int
    name: str
    due_on: dt.date | None
    amount: Decimal | None = None
    percent: Decimal | None = None


@dataclass(frozen=True)
class FixedFeeTerms:
    project: int
    project_code: str
    project_name: str
    fee: Decimal
    show_time: bool = True
    milestones: tuple[MilestoneTerms, ...] = ()


@dataclass(frozen=True)
class RetainerTerms:
    """`balance`: the ledger's balance as of the period's end (top-ups, and what approved
    invoices drew, allowed and let expire)."""

    balance: Decimal
    monthly_amount: Decimal | None = None
    rollover: bool = True

    @property
    def available(self) -> Decimal:
        return self.balance + (self.monthly_amount or ZERO)


@dataclass(frozen=True)
class CapTerms:
    """An engagement cap and what approved invoices of earlier periods in its window billed
    of its project."""

    id: int
    project_code: str
    starts_on: dt.date
    ends_on: dt.date
    hours: Decimal | None = None
    amount: Decimal | None = None
    used_hours: Decimal = ZERO
    used_amount: Decimal = ZERO
    project: int | None = None

    def covers(self, start: dt.date, end: dt.date) -> bool:
        return self.starts_on <= end and start <= self.ends_on

    @property
    def remaining_amount(self) -> Decimal | None:
        if self.amount is None:
            return None
        return max(ZERO, self.amount - self.used_amount)


def milestone_amount(milestone: MilestoneTerms, fee: Decimal, currency: str) -> Decimal:
    """13.1: a milestone's own amount, or round(fee x percent / 100)."""
    if milestone.amount is not None:
        return round_money(milestone.amount, currency)
    assert milestone.percent is not None  # the model allows one of the two, never neither
    return percent_of(fee, milestone.percent, currency)


def due_milestones(terms: FixedFeeTerms, period_end: dt.date) -> tuple[MilestoneTerms, ...]:
    """13.1: the unbilled milestones due on or before the period's end, by date then id."""
    due = [m for m in terms.milestones if m.due_on is not None and m.due_on <= period_end]
    return tuple(sorted(due, key=lambda m: (m.due_on or period_end, m.id)))


def realization_percent(billed: Decimal, standard: Decimal) -> Decimal | None:
    """billed / standard value in percent, to 1 place; None without a standard value."""
    if not standard:
        return None
    return round_half_up(billed * HUNDRED / standard, PERCENT_PLACES)


def alert_level(used: Decimal, limit: Decimal | None) -> int | None:
    """13.3: the highest of 50/80/100 that `used` has reached of `limit`, or None."""
    if not limit:
        return None
    percent = used * HUNDRED / limit
    return next((level for level in ALERT_LEVELS if percent >= level), None)


def usage_percent(used: Decimal, limit: Decimal | None) -> Decimal | None:
    if not limit:
        return None
    return round_half_up(used * HUNDRED / limit, PERCENT_PLACES)


def capped_amounts(
    caps: Mapping[str, Decimal], engagement_caps: Sequence[CapTerms]
) -> dict[str, Decimal]:
    """13.3: each project's per-period cap lowered to what its engagement caps have left."""
    merged = dict(caps)
    for cap in engagement_caps:
        remaining = cap.remaining_amount
        if remaining is None:
            continue
        current = merged.get(cap.project_code)
        merged[cap.project_code] = remaining if current is None else min(current, remaining)
    return merged


def retainer_ledger_rows(
    *, drawn: Decimal, available: Decimal, monthly_amount: Decimal | None, rollover: bool
) -> list[tuple[str, Decimal]]:
    """13.2: the ledger rows an approval writes, as (kind, signed amount): the month's
    allowance, the drawdown, and without rollover what the month left (expiry)."""
    rows: list[tuple[str, Decimal]] = []
    if monthly_amount:
        rows.append(("allowance", monthly_amount))
    if drawn:
        rows.append(("drawdown", -drawn))
    left = available - drawn
    if monthly_amount and not rollover and left > 0:
        rows.append(("expiry", -min(left, available)))
    return rows


@dataclass(frozen=True)
class Engagement:
    """Section 13's terms for one invoice (see the module docstring for where each applies)."""

    period_start: dt.date
    period_end: dt.date
    fixed_fees: Mapping[int, FixedFeeTerms] = field(default_factory=dict)
    retainer: RetainerTerms | None = None
    caps: tuple[CapTerms, ...] = ()

    def for_scope(self, project: int | None) -> Engagement:
        """The terms of one invoice: the whole client's, or (invoiced per project) one
        project's fixed fee and caps; a retainer draws on whole-client invoices only."""
        if project is None:
            return self
        return dataclasses.replace(
            self,
            fixed_fees={k: v for k, v in self.fixed_fees.items() if k == project},
            retainer=None,
            caps=tuple(c for c in self.caps if c.project == project),
        )

    def has_due_fees(self) -> bool:
        """13.1: a milestone is due, so the invoice exists even without time."""
        return any(due_milestones(t, self.period_end) for t in self.fixed_fees.values())

    def active_caps(self) -> tuple[CapTerms, ...]:
        return tuple(c for c in self.caps if c.covers(self.period_start, self.period_end))

    def policy(self, policy: Policy) -> Policy:
        amounts = [c for c in self.active_caps() if c.amount is not None]
        if not amounts:
            return policy
        return dataclasses.replace(policy, caps=capped_amounts(policy.caps, amounts))

    def before_caps(self, lines: list[LineDraft], policy: Policy) -> list[LineDraft]:
        if not self.fixed_fees:
            return lines
        detail: dict[int, list[LineDraft]] = {project: [] for project in self.fixed_fees}
        for line in lines:
            if self._fixed_fee_time(line):
                detail[line.project or 0].append(line)
        kept = []
        for line in lines:
            if not self._fixed_fee_time(line):
                kept.append(line)
                continue
            terms = self.fixed_fees[line.project or 0]
            kept.extend(_fixed_fee_detail(line, detail[terms.project], terms))
        for project, terms in sorted(self.fixed_fees.items()):
            standard = sum((ln.amount for ln in detail[project]), ZERO)
            kept.extend(_fee_lines(terms, self.period_end, standard, policy))
        return kept

    def after_discount(self, lines: list[LineDraft], policy: Policy) -> list[LineDraft]:
        _explain_caps(lines, self.active_caps())
        if self.retainer is None:
            return lines
        return [*lines, drawdown_line(lines, self.retainer, policy)]

    def _fixed_fee_time(self, line: LineDraft) -> bool:
        return line.kind == LineKind.TIME and line.project in self.fixed_fees


def _fixed_fee_detail(
    line: LineDraft, detail: list[LineDraft], terms: FixedFeeTerms
) -> list[LineDraft]:
    """13.1: a fixed-fee project's time line at no charge, in its place, keeping its standard
    value; without `show_time`, one line for all of them, in the place of the first."""
    if terms.show_time:
        return [_at_no_charge(line, terms)]
    if line is detail[0]:
        return [_at_no_charge(_summary_line(detail, terms), terms)]
    return []


def _summary_line(detail: list[LineDraft], terms: FixedFeeTerms) -> LineDraft:
    first = detail[0]
    seconds = sum(p.raw_seconds for ln in detail for p in ln.entries)
    return LineDraft(
        LineKind.TIME,
        f"Time on {terms.project_name}",
        round_quantity(Fraction(seconds, 3600)),
        ZERO,
        sum((ln.amount for ln in detail), ZERO),
        project=terms.project,
        first_date=min(ln.first_date for ln in detail if ln.first_date),
        project_code=first.project_code,
        project_name=first.project_name,
        entries=[p for ln in detail for p in ln.entries],
        derivation={
            "entries": sum(len(ln.entries) for ln in detail),
            "raw_minutes": str(round_quantity(Fraction(seconds, 60))),
            "lines": len(detail),
            "note": "time on a fixed-fee project, no charge",
        },
        sort_key=first.sort_key,
    )


def _at_no_charge(line: LineDraft, terms: FixedFeeTerms) -> LineDraft:
    derivation = dict(line.derivation)
    derivation["fixed_fee_time"] = {
        "project": terms.project_code,
        "standard_amount": str(line.amount),
        "note": f"time on a fixed-fee project: standard value {line.amount}, no charge",
    }
    return dataclasses.replace(
        line,
        kind=LineKind.NO_CHARGE,
        # The printable invoice reads "<...> (No charge)" as "No charge: <hours> h <...>".
        description=f"{line.description}, in the fixed fee (No charge)",
        unit_price=ZERO,
        amount=ZERO,
        entries=[
            EntryPlacement(
                p.entry_id, PlacementState.NO_CHARGE, p.raw_seconds, late_from=p.late_from
            )
            for p in line.entries
        ],
        derivation=derivation,
    )


def _fee_lines(
    terms: FixedFeeTerms, period_end: dt.date, standard: Decimal, policy: Policy
) -> list[LineDraft]:
    """13.1: one fee line per due milestone, quantity 1, with the period's realization."""
    lines = []
    for milestone in due_milestones(terms, period_end):
        amount = milestone_amount(milestone, terms.fee, policy.currency)
        share = (
            f"{milestone.percent.normalize():f}% of {terms.fee}"
            if milestone.amount is None and milestone.percent is not None
            else "fixed amount"
        )
        lines.append(
            LineDraft(
                LineKind.FIXED_FEE,
                f"{terms.project_name}: {milestone.name}",
                Decimal(1),
                amount,
                amount,
                project=terms.project,
                project_code=terms.project_code,
                project_name=terms.project_name,
                derivation={
                    "fixed_fee": {
                        "milestone": milestone.id,
                        "name": milestone.name,
                        "due_on": milestone.due_on.isoformat() if milestone.due_on else None,
                        "fee": str(terms.fee),
                        "percent": str(milestone.percent) if milestone.percent else None,
                        "amount": str(amount),
                        "standard_value": str(standard),
                    },
                    "arithmetic": f"{share} = {amount} {policy.currency}",
                },
            )
        )
    _realization(lines, standard)
    return lines


def _realization(lines: list[LineDraft], standard: Decimal) -> None:
    billed = sum((ln.amount for ln in lines), ZERO)
    percent = realization_percent(billed, standard)
    for line in lines:
        line.derivation["fixed_fee"]["realization_percent"] = (
            str(percent) if percent is not None else None
        )
        line.derivation["note"] = (
            f"fixed fee, milestone {line.derivation['fixed_fee']['name']}: realization "
            + (f"{percent} % ({billed} / standard value {standard})" if percent else "-")
        )


def _explain_caps(lines: Sequence[LineDraft], caps: Sequence[CapTerms]) -> None:
    """13.3: a cap line that an engagement cap lowered says so."""
    by_code = {c.project_code: c for c in caps if c.amount is not None}
    for line in lines:
        cap = by_code.get(line.derivation.get("cap", {}).get("project", ""))
        if line.kind != LineKind.CAP or cap is None:
            continue
        line.derivation["engagement_cap"] = {
            "id": cap.id,
            "window": f"{cap.starts_on.isoformat()}..{cap.ends_on.isoformat()}",
            "amount": str(cap.amount),
            "billed_before": str(cap.used_amount),
            "remaining": str(cap.remaining_amount),
        }


def drawdown_line(lines: Sequence[LineDraft], terms: RetainerTerms, policy: Policy) -> LineDraft:
    """13.2: -min(available, what the invoice owes before it); what is beyond the balance is
    the overage, billed as usual."""
    owed = sum(
        (
            ln.amount
            for ln in lines
            if ln.kind in (*SUBTOTAL_KINDS, LineKind.CAP, LineKind.DISCOUNT)
        ),
        ZERO,
    )
    available = max(ZERO, terms.available)
    drawn = round_money(min(available, max(owed, ZERO)), policy.currency)
    overage = owed - drawn
    monthly = f" + monthly {terms.monthly_amount}" if terms.monthly_amount else ""
    return LineDraft(
        LineKind.DRAWDOWN,
        "Retainer drawdown",
        Decimal(1),
        -drawn,
        -drawn,
        derivation={
            "retainer": {
                "balance": str(terms.balance),
                "monthly_amount": str(terms.monthly_amount) if terms.monthly_amount else None,
                "rollover": terms.rollover,
                "available": str(available),
                "owed": str(owed),
                "drawn": str(drawn),
                "remaining": str(available - drawn),
                "overage": str(overage),
            },
            "arithmetic": f"-min({terms.balance}{monthly}, {owed}) = {-drawn} "
            f"{policy.currency}; overage {overage}",
            "note": f"retainer: {available - drawn} left of {available}",
        },
    )
