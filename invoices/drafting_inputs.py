"""Rows -> the plain inputs of `invoices.core.pricing`, for many clients at once.

Drafting prices every client of a period; loading each client's entries through model
instances and `select_related` cost more than the pricing itself (about 7 queries and 14 ms of
CPU per client, measured in issue #12). Here a fixed number of queries loads a whole batch of
clients as plain values, whatever its number of clients and entries: one for the entries (with
their person, project, decision and adjustment), one for the manual lines, one for the people
named in adjustments.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Sum

from invoices.core.engagements import (
    CapTerms,
    Engagement,
    FixedFeeTerms,
    MilestoneTerms,
    RetainerTerms,
)
from invoices.core.pricing import SUBTOTAL_KINDS, Adjustment, LineKind, ManualCharge, PricedEntry
from invoices.core.wording import client_wording
from invoices.models import (
    Classification,
    EngagementCap,
    FixedFee,
    Invoice,
    InvoiceEntry,
    InvoiceLine,
    InvoiceStatus,
    ManualLine,
    Milestone,
    Retainer,
    RetainerEntry,
)
from timesheets.models import TimeEntry

TIERS = dict(Classification.Tier.choices)
SOURCES = dict(TimeEntry.Source.choices)

# The columns one entry is priced from. Names with "__" follow relations (one join each,
# LEFT joins where the relation is optional: an entry may be undecided or unadjusted).
ENTRY_COLUMNS = (
    "id",
    "client_id",
    "date",
    "duration_seconds",
    "person_id",
    "person__name",
    "person__role",
    "project_id",
    "project__code",
    "project__name",
    "task",
    "notes",
    "content_hash",
    "source",
    "tracker_invoiced",
    "tracker_approved",
    "classification__tier",
    "classification__rule_id",
    "classification__category__key",
    "classification__category__name",
    "classification__description",
    "classification__manual_description",
    "classification__model_description",
    "classification__billable",
    "classification__billing_code",
    "classification__needs_review",
    "classification__review_reason",
    "classification__hold_released_at",
    "adjustment__billed_seconds",
    "adjustment__source_seconds",
    "adjustment__reason",
    "adjustment__made_by_id",
)


def approved_invoices_covering_entry() -> QuerySet[Invoice]:
    """For a subquery over time entries: the approved invoices of the entry's client (and
    project, when invoiced per project) whose period holds the entry's date. An entry with one
    and no live invoice is late time (section 10.1)."""
    return Invoice.objects.filter(
        Q(project__isnull=True) | Q(project_id=OuterRef("project_id")),
        client_id=OuterRef("client_id"),
        status=InvoiceStatus.APPROVED,
        period_start__lte=OuterRef("date"),
        period_end__gte=OuterRef("date"),
    )


def unbilled_manual_lines(start: dt.date, end: dt.date) -> QuerySet[ManualLine]:
    """Manual lines of the period that no approved invoice has billed: new ones, and those of an
    invoice voided since (they go on its successor, as its entries do). A draft's lines are
    among them: a line is tied to its invoice only when that invoice is approved."""
    return ManualLine.objects.filter(
        Q(invoice__isnull=True) | Q(invoice__status=InvoiceStatus.VOID),
        period_start__gte=start,
        period_end__lte=end,
    )


@dataclass(frozen=True)
class DraftInputs:
    """What the core prices for one client and period, and each entry's content hash (which
    the draft records, so that approval can refuse entries changed since)."""

    entries: list[PricedEntry]
    manual: list[ManualCharge]
    hashes: dict[int, str]


def hold_reason_of(
    *,
    source: str,
    tracker_invoiced: bool,
    tracker_approved: bool | None,
    decided: bool,
    released: bool,
    billable: bool,
    needs_review: bool,
    bill_approved_only: bool,
) -> str:
    """Section 10.2: why the tracker's own state holds the entry back, or "" (a reviewer's
    release, or an entry that bills nothing here anyway, is never held)."""
    if decided and (released or (not needs_review and not billable)):
        return ""
    tracker = SOURCES.get(source, source)
    if tracker_invoiced:
        return f"invoiced in {tracker}"
    if bill_approved_only and tracker_approved is False:
        return f"not approved in {tracker}"
    return ""


def source_label_of(tier: str, rule_id: int | None) -> str:
    """How a line's derivation names the tier that decided ("rule #12", "Memory"), as
    `Classification.source_label` does for a stored decision."""
    if tier == Classification.Tier.RULE and rule_id:
        return f"rule #{rule_id}"
    return TIERS.get(tier, tier)


def who(user: User | None) -> str:
    """How a derivation names the reviewer who adjusted something."""
    if user is None:
        return "(deleted user)"
    return str(user.get_full_name() or user.get_username())


def load_inputs(
    *,
    client_ids: Iterable[int],
    start: dt.date,
    end: dt.date,
    bill_approved_only: Mapping[int, bool],
    release_drafts: bool = False,
) -> dict[int, DraftInputs]:
    """Every client's entries of the period (and late time from approved earlier periods,
    section 10.1) that are on no live invoice, and its manual lines to bill, in three queries.
    Clients with nothing to draft are absent.

    Drafting releases the period's drafts before it loads; `release_drafts` loads as if it had
    (entries on those drafts count as free), for a what-if that writes nothing."""
    client_ids = list(client_ids)
    rows = list(_entry_rows(client_ids, start, end, release_drafts))
    names = _people_named(rows)
    entries: dict[int, list[PricedEntry]] = defaultdict(list)
    hashes: dict[int, dict[int, str]] = defaultdict(dict)
    for row in rows:
        client = row["client_id"]
        entries[client].append(_priced(row, start, names, bill_approved_only.get(client, False)))
        hashes[client][row["id"]] = row["content_hash"]
    manual = _manual_charges(client_ids, start, end)
    return {
        client: DraftInputs(
            entries=entries.get(client, []),
            manual=manual.get(client, []),
            hashes=hashes.get(client, {}),
        )
        for client in set(entries) | set(manual)
    }


def _entry_rows(
    client_ids: list[int], start: dt.date, end: dt.date, release_drafts: bool
) -> QuerySet[TimeEntry, dict[str, Any]]:
    approved_period = approved_invoices_covering_entry()
    elsewhere = InvoiceEntry.objects.filter(entry=OuterRef("pk"), is_live=True)
    if release_drafts:
        elsewhere = elsewhere.exclude(
            invoice__status=InvoiceStatus.DRAFT,
            invoice__period_start=start,
            invoice__period_end=end,
        )
    rows: QuerySet[TimeEntry, dict[str, Any]] = (
        TimeEntry.objects.filter(
            Q(date__gte=start, date__lte=end) | Q(date__lt=start) & Exists(approved_period),
            client_id__in=client_ids,
        )
        .exclude(Exists(elsewhere))
        .annotate(
            approved_period_start=Subquery(
                approved_period.order_by("period_start").values("period_start")[:1]
            )
        )
        .order_by("client_id", "date", "id")
        .values(*ENTRY_COLUMNS, "approved_period_start")
    )
    return rows


def _people_named(rows: list[dict[str, Any]]) -> dict[int | None, str]:
    """Who made each adjustment, by user id: one query for all of them."""
    ids = {row["adjustment__made_by_id"] for row in rows if row["adjustment__reason"] is not None}
    return _names(ids)


def _names(ids: set[int | None]) -> dict[int | None, str]:
    users = get_user_model().objects.filter(pk__in=[i for i in ids if i is not None])
    names: dict[int | None, str] = {user.pk: who(user) for user in users}
    names[None] = who(None)
    return names


def _priced(
    row: dict[str, Any], start: dt.date, names: dict[int | None, str], bill_approved_only: bool
) -> PricedEntry:
    tier = row["classification__tier"]
    decided = tier is not None  # None: no classification row at all (never classified)
    category_key = row["classification__category__key"]
    category_name = row["classification__category__name"] or ""
    billable = bool(row["classification__billable"]) if decided else False
    needs_review = bool(row["classification__needs_review"]) if decided else True
    source_label = source_label_of(tier, row["classification__rule_id"]) if decided else "Undecided"
    return PricedEntry(
        id=row["id"],
        date=row["date"],
        seconds=row["duration_seconds"],
        person=row["person_id"],
        person_name=row["person__name"],
        role=row["person__role"],
        project=row["project_id"],
        project_code=row["project__code"] or row["project__name"],
        project_name=row["project__name"],
        task=row["task"],
        category=category_key,
        category_name=category_name if category_key else "Uncategorized",
        description=client_wording(
            worded=(row["classification__description"] or "") if decided else "",
            notes=row["notes"],
            category_name=category_name,
            deliberate=decided
            and bool(
                row["classification__manual_description"]
                or (tier == Classification.Tier.LLM and row["classification__model_description"])
            ),
        ),
        source_label=source_label,
        billable=billable,
        billing_code=(row["classification__billing_code"] or "") if decided else "",
        needs_review=needs_review,
        review_reason=(row["classification__review_reason"] or "") or "not classified yet",
        hold_reason=hold_reason_of(
            source=row["source"],
            tracker_invoiced=row["tracker_invoiced"],
            tracker_approved=row["tracker_approved"],
            decided=decided,
            released=row["classification__hold_released_at"] is not None,
            billable=billable,
            needs_review=needs_review,
            bill_approved_only=bill_approved_only,
        ),
        late_from=row["approved_period_start"] if row["date"] < start else None,
        adjustment=_adjustment(row, names),
    )


def _adjustment(row: dict[str, Any], names: dict[int | None, str]) -> Adjustment | None:
    if row["adjustment__reason"] is None:  # reason is required: None means no adjustment row
        return None
    return Adjustment(
        billed_seconds=row["adjustment__billed_seconds"],
        source_seconds=row["adjustment__source_seconds"],
        reason=row["adjustment__reason"],
        made_by=names.get(row["adjustment__made_by_id"], who(None)),
    )


def _manual_charges(
    client_ids: list[int], start: dt.date, end: dt.date
) -> dict[int, list[ManualCharge]]:
    lines = (
        unbilled_manual_lines(start, end)
        .filter(client_id__in=client_ids)
        .select_related("project", "category", "made_by")
        .order_by("client_id", "id")
    )
    charges: dict[int, list[ManualCharge]] = defaultdict(list)
    for line in lines:
        charges[line.client_id].append(
            ManualCharge(
                id=line.id,
                kind=line.kind,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                reason=line.reason,
                made_by=who(line.made_by),
                category=line.category.key if line.category else None,
                billing_code=line.billing_code,
                project=line.project_id,
                project_code=(line.project.code or line.project.name) if line.project else "",
                project_name=line.project.name if line.project else "",
            )
        )
    return charges


def unbilled_milestones() -> QuerySet[Milestone]:
    """Milestones no approved invoice has billed (a void releases its milestones, 13.1)."""
    return Milestone.objects.filter(
        Q(billed_on__isnull=True) | Q(billed_on__status=InvoiceStatus.VOID)
    )


def load_engagements(
    *, client_ids: Iterable[int], start: dt.date, end: dt.date
) -> dict[int, Engagement]:
    """Section 13's terms of every client of the batch: fixed fees with their unbilled
    milestones, the retainer and its ledger balance as of the period's end, and the engagement
    caps covering the period with what approved invoices of earlier periods billed of them. Six
    queries whatever the number of clients. Clients without any are absent."""
    ids = list(client_ids)
    fees: dict[int, dict[int, FixedFeeTerms]] = defaultdict(dict)
    milestones: dict[int, list[MilestoneTerms]] = defaultdict(list)
    for m in unbilled_milestones().filter(fixed_fee__project__client_id__in=ids).order_by("id"):
        milestones[m.fixed_fee_id].append(
            MilestoneTerms(m.id, m.name, m.due_on, amount=m.amount, percent=m.percent)
        )
    for fee in FixedFee.objects.filter(project__client_id__in=ids).select_related("project"):
        project = fee.project
        fees[project.client_id][project.pk] = FixedFeeTerms(
            project=project.pk,
            project_code=project.code or project.name,
            project_name=project.name,
            fee=fee.fee,
            show_time=fee.show_time,
            milestones=tuple(milestones.get(fee.pk, [])),
        )
    retainers = _retainer_terms(ids, end)
    caps = _cap_terms(ids, start, end)
    return {
        client: Engagement(
            period_start=start,
            period_end=end,
            fixed_fees=fees.get(client, {}),
            retainer=retainers.get(client),
            caps=tuple(caps.get(client, [])),
        )
        for client in set(fees) | set(retainers) | set(caps)
    }


def retainer_balance(*, client_id: int, end: dt.date) -> Decimal:
    """The ledger's balance as of `end` (13.2), as drafting computes it."""
    total = RetainerEntry.objects.filter(client_id=client_id, on_date__lte=end).aggregate(
        total=Sum("amount")
    )["total"]
    return total or Decimal(0)


def _retainer_terms(ids: list[int], end: dt.date) -> dict[int, RetainerTerms]:
    balances = dict(
        RetainerEntry.objects.filter(client_id__in=ids, on_date__lte=end)
        .values("client_id")
        .annotate(total=Sum("amount"))
        .values_list("client_id", "total")
    )
    return {
        r.client_id: RetainerTerms(
            balance=balances.get(r.client_id) or Decimal(0),
            monthly_amount=r.monthly_amount,
            rollover=r.rollover,
        )
        for r in Retainer.objects.filter(client_id__in=ids)
    }


def _cap_terms(ids: list[int], start: dt.date, end: dt.date) -> dict[int, list[CapTerms]]:
    rows = list(
        EngagementCap.objects.filter(
            client_id__in=ids, starts_on__lte=end, ends_on__gte=start
        ).select_related("project")
    )
    used = _billed_before(rows, start)
    caps: dict[int, list[CapTerms]] = defaultdict(list)
    for cap in rows:
        hours, amount = used.get(cap.pk, (Decimal(0), Decimal(0)))
        caps[cap.client_id].append(
            CapTerms(
                id=cap.pk,
                project_code=cap.project.code or cap.project.name,
                starts_on=cap.starts_on,
                ends_on=cap.ends_on,
                hours=cap.hours,
                amount=cap.amount,
                used_hours=hours,
                used_amount=amount,
                project=cap.project_id,
            )
        )
    return caps


def _billed_before(caps: list[EngagementCap], start: dt.date) -> dict[int, tuple[Decimal, Decimal]]:
    """Per cap: the hours (time lines) and amount (the project's lines, caps included) of
    approved invoices whose period lies in the cap's window and ends before `start`."""
    if not caps:
        return {}
    lines = InvoiceLine.objects.filter(
        project_id__in={c.project_id for c in caps},
        invoice__status=InvoiceStatus.APPROVED,
        invoice__period_end__lt=start,
        kind__in=[*SUBTOTAL_KINDS, LineKind.CAP],
    ).values_list("project_id", "invoice__period_start", "kind", "quantity", "amount")
    used: dict[int, tuple[Decimal, Decimal]] = {}
    for project_id, period_start, kind, quantity, amount in lines:
        for cap in caps:
            if cap.project_id != project_id or not cap.starts_on <= period_start <= cap.ends_on:
                continue
            hours, total = used.get(cap.pk, (Decimal(0), Decimal(0)))
            used[cap.pk] = (hours + (quantity if kind == LineKind.TIME else 0), total + amount)
    return used
