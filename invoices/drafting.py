"""Builds invoice drafts for a period: rows -> `invoices.core` -> Invoice, lines and links.

Each client is drafted in its own transaction under a row lock on the client, so two drafting
runs for the same client (same or overlapping periods) take turns; the partial unique index
`entry_on_one_live_invoice` is the final guarantee that an entry is never billed twice.

A reviewer's adjustments (billing semantics 10.4) are loaded beside the entries: an entry's
write-down or write-up (`EntryAdjustment`) and the manual lines of the client's period that no
approved invoice has billed yet (`ManualLine`, also on the successor of a voided invoice).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from invoices.classification import classify_entries, entries_to_classify
from invoices.configuration import Configuration, load_configuration
from invoices.core.pricing import (
    Adjustment,
    InvoiceDraft,
    ManualCharge,
    PricedEntry,
    PricingError,
    price_invoice,
)
from invoices.core.wording import client_wording
from invoices.models import (
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceLine,
    InvoiceStatus,
    ManualLine,
)
from timesheets.models import Client, TimeEntry


class DraftingError(Exception):
    """A draft could not be built; the message says why, for ops staff."""


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"period starts {self.start} after it ends {self.end}")

    @classmethod
    def month(cls, text: str) -> Period:
        """'2026-10' -> 2026-10-01..2026-10-31."""
        try:
            year, month = (int(part) for part in text.split("-"))
            last = calendar.monthrange(year, month)[1]
        except (ValueError, calendar.IllegalMonthError) as exc:
            raise ValueError(f"not a month (YYYY-MM): {text!r}") from exc
        return cls(dt.date(year, month, 1), dt.date(year, month, last))

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


@dataclass
class DraftSummary:
    period: Period
    invoices: list[Invoice] = field(default_factory=list)
    created: int = 0
    rebuilt: int = 0
    removed: int = 0
    frozen: int = 0

    def __str__(self) -> str:
        return (
            f"{self.period}: {len(self.invoices)} draft(s) ({self.created} new, {self.rebuilt} "
            f"rebuilt), {self.removed} emptied draft(s) removed, {self.frozen} approved left as is"
        )


def draft_invoices(
    *, period: Period, client_ids: Iterable[int] | None = None, user=None, reclassify: bool = True
) -> DraftSummary:
    """Draft (or rebuild) every client's invoice for `period`. Idempotent: drafting twice
    rebuilds the same drafts in place; approved and void invoices are never touched.

    `reclassify=False` skips the classification pass, for callers that just ran it."""
    ids = _clients_to_draft(period, client_ids)
    if reclassify:
        # Rules may have changed since import: classify the period first, and the earlier
        # entries on no live invoice, which this draft may take as late time (section 10.1).
        classify_entries(entries_to_classify(client_ids=ids, start=period.start, end=period.end))
        earlier = entries_to_classify(client_ids=ids, end=period.start - dt.timedelta(days=1))
        classify_entries(earlier.exclude(invoice_links__is_live=True))
    config = load_configuration(ids)
    summary = DraftSummary(period=period)
    for client_id in ids:
        _draft_client(client_id, period, config, summary, user)
    return summary


def approved_invoices_covering_entry():
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


def _clients_to_draft(period: Period, client_ids: Iterable[int] | None) -> list[int]:
    """Clients with entries in the period, with late time for it (section 10.1), with manual
    lines to bill in it (10.4), or with a draft of it to rebuild or remove (its entries may all
    have moved away)."""
    in_period = TimeEntry.objects.filter(date__gte=period.start, date__lte=period.end)
    late = TimeEntry.objects.filter(date__lt=period.start).exclude(invoice_links__is_live=True)
    late = late.filter(Exists(approved_invoices_covering_entry()))
    drafts = Invoice.objects.filter(
        period_start=period.start, period_end=period.end, status=InvoiceStatus.DRAFT
    )
    manual = unbilled_manual_lines(period)
    if client_ids is not None:
        client_ids = list(client_ids)
        in_period, late = (
            in_period.filter(client_id__in=client_ids),
            late.filter(client_id__in=client_ids),
        )
        drafts = drafts.filter(client_id__in=client_ids)
        manual = manual.filter(client_id__in=client_ids)
    ids = set(in_period.values_list("client_id", flat=True).distinct())
    ids |= set(late.values_list("client_id", flat=True).distinct())
    ids |= set(drafts.values_list("client_id", flat=True))
    ids |= set(manual.values_list("client_id", flat=True).distinct())
    return sorted(ids)


def unbilled_manual_lines(period: Period):
    """Manual lines of `period` that no approved invoice has billed: new ones, and those of an
    invoice voided since (they go on its successor, as its entries do)."""
    return ManualLine.objects.filter(
        Q(invoice__isnull=True) | Q(invoice__status=InvoiceStatus.VOID),
        period_start__gte=period.start,
        period_end__lte=period.end,
    )


def rebuild_invoice(invoice: Invoice, *, user=None) -> Invoice | None:
    """Rebuild one draft (after a correction). Returns the rebuilt draft, or None if the
    client's period has nothing left to draft."""
    if invoice.status != InvoiceStatus.DRAFT:
        raise DraftingError(
            f"{invoice.label} is {invoice.get_status_display().lower()}; only drafts are rebuilt"
        )
    summary = draft_invoices(
        period=Period(invoice.period_start, invoice.period_end),
        client_ids=[invoice.client_id],
        user=user,
    )
    return next((inv for inv in summary.invoices if inv.project_id == invoice.project_id), None)


def _draft_client(
    client_id: int, period: Period, config: Configuration, summary: DraftSummary, user
) -> None:
    policy = config.policy(client_id)
    with transaction.atomic():
        # Serializes drafting per client: a concurrent run waits here, then sees our result.
        Client.objects.select_for_update().get(pk=client_id)
        # Locked too: an approval (which locks the invoice) and a rebuild take turns, so a
        # rebuild never overwrites an approval that committed while it ran.
        live = list(
            Invoice.objects.select_for_update()
            .filter(client_id=client_id, period_start=period.start, period_end=period.end)
            .exclude(status=InvoiceStatus.VOID)
        )
        drafts = {inv.project_id: inv for inv in live if inv.status == InvoiceStatus.DRAFT}
        summary.frozen += sum(1 for inv in live if inv.status != InvoiceStatus.DRAFT)
        frozen_scopes = {inv.project_id for inv in live if inv.status != InvoiceStatus.DRAFT}
        if drafts:
            # Release the drafts' entries; they are re-placed below, in this transaction.
            InvoiceEntry.objects.filter(invoice__in=drafts.values()).delete()
            InvoiceLine.objects.filter(invoice__in=drafts.values()).delete()

        # Section 10.1: an entry dated in a period whose invoice is already approved is late
        # time, and goes on this (a later) draft, flagged with the period it is from.
        approved_period = approved_invoices_covering_entry()
        entries = (
            TimeEntry.objects.filter(
                Q(date__gte=period.start, date__lte=period.end)
                | Q(date__lt=period.start) & Exists(approved_period),
                client_id=client_id,
            )
            .exclude(invoice_links__is_live=True)
            .annotate(
                approved_period_start=Subquery(
                    approved_period.order_by("period_start").values("period_start")[:1]
                )
            )
            .select_related(
                "person",
                "project",
                "classification",
                "classification__category",
                "adjustment__made_by",
            )
            .order_by("date", "id")
        )
        scopes: dict[int | None, list[PricedEntry]] = defaultdict(list)
        hashes: dict[int, str] = {}
        for entry in entries:
            scope = entry.project_id if policy.invoice_per_project else None
            if scope in frozen_scopes:
                continue  # the scope's invoice is approved; late entries wait for a new period
            scopes[scope].append(_priced(entry, policy, period))
            hashes[entry.id] = entry.content_hash
        manual: dict[int | None, list[ManualCharge]] = defaultdict(list)
        lines = unbilled_manual_lines(period).filter(client_id=client_id)
        for line in lines.select_related("project", "category", "made_by").order_by("id"):
            scope = line.project_id if policy.invoice_per_project else None
            if scope not in frozen_scopes:
                manual[scope].append(_manual_charge(line))

        in_scope = set(drafts) | set(scopes) | set(manual)
        for scope in sorted(in_scope, key=lambda s: (s is not None, s or 0)):
            draft = drafts.get(scope)
            priced, charges = scopes.get(scope, []), manual.get(scope, [])
            try:
                result = (priced or charges) and price_invoice(
                    priced, policy=policy, rates=config.rates, client=client_id, manual=charges
                )
            except PricingError as exc:
                name = Client.objects.get(pk=client_id).name
                raise DraftingError(f"{name}, {period}: {exc}") from exc
            if not result or not (result.placements or result.lines):
                # Nothing to bill, review or hold (at most non-billable time that no line
                # shows, e.g. what an import files under its internal client): no invoice.
                # A draft of manual lines only is still a draft (section 10.4).
                if draft is not None:
                    draft.delete()
                    summary.removed += 1
                continue
            invoice = _save(draft, result, client_id, scope, period, config, user, hashes)
            summary.invoices.append(invoice)
            if draft is None:
                summary.created += 1
            else:
                summary.rebuilt += 1


def _priced(entry: TimeEntry, policy, period: Period) -> PricedEntry:
    c = getattr(entry, "classification", None)
    category = c.category if c else None
    late_from = entry.approved_period_start if entry.date < period.start else None
    return PricedEntry(
        id=entry.id,
        date=entry.date,
        seconds=entry.duration_seconds,
        person=entry.person_id,
        person_name=entry.person.name,
        role=entry.person.role,
        project=entry.project_id,
        project_code=entry.project.code or entry.project.name,
        project_name=entry.project.name,
        task=entry.task,
        category=category.key if category else None,
        category_name=category.name if category else "Uncategorized",
        description=client_wording(
            worded=c.description if c else "",
            notes=entry.notes,
            category_name=category.name if category else "",
            deliberate=bool(
                c and (c.manual_description or (c.tier == c.Tier.LLM and c.model_description))
            ),
        ),
        source_label=c.source_label if c else "Undecided",
        billable=c.billable if c else False,
        billing_code=c.billing_code if c else "",
        needs_review=c.needs_review if c else True,
        review_reason=(c.review_reason if c else "") or "not classified yet",
        hold_reason=hold_reason(entry, c, policy),
        late_from=late_from,
        adjustment=_adjustment(entry),
    )


def who(user) -> str:
    """How a derivation names the reviewer who adjusted something."""
    if user is None:
        return "(deleted user)"
    return user.get_full_name() or user.get_username()


def _adjustment(entry: TimeEntry) -> Adjustment | None:
    adjustment = getattr(entry, "adjustment", None)
    if adjustment is None:
        return None
    return Adjustment(
        billed_seconds=adjustment.billed_seconds,
        source_seconds=adjustment.source_seconds,
        reason=adjustment.reason,
        made_by=who(adjustment.made_by),
    )


def _manual_charge(line: ManualLine) -> ManualCharge:
    return ManualCharge(
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


def hold_reason(entry: TimeEntry, classification, policy) -> str:
    """Section 10.2: why the tracker's own state holds the entry back, or "" (a reviewer's
    release, or an entry that bills nothing here anyway, is never held)."""
    if classification is not None:
        if classification.hold_released_at is not None:
            return ""
        if not classification.needs_review and not classification.billable:
            return ""
    tracker = entry.get_source_display()
    if entry.tracker_invoiced:
        return f"invoiced in {tracker}"
    if policy is not None and policy.bill_approved_only and entry.tracker_approved is False:
        return f"not approved in {tracker}"
    return ""


def _save(draft, result: InvoiceDraft, client_id, scope, period, config, user, hashes) -> Invoice:
    policy = config.policy(client_id)
    now = timezone.now()
    issue = period.end
    values = {
        "currency": policy.currency,
        "issue_date": issue,
        "due_date": issue + dt.timedelta(days=policy.payment_terms_days),
        "subtotal": result.subtotal,
        "adjustments": result.adjustments,
        "discount": result.discount,
        "total": result.total,
        "flags": [Flag(f) for f in result.flags],
        "policy_snapshot": policy.snapshot(),
        "drafted_at": now,
    }
    if draft is None:
        invoice = Invoice.objects.create(
            client_id=client_id,
            project_id=scope,
            period_start=period.start,
            period_end=period.end,
            **values,
        )
        InvoiceEvent.objects.create(
            invoice=invoice, action="drafted", actor=user, detail={"total": str(result.total)}
        )
    else:
        before = str(draft.total)
        for name, value in values.items():
            setattr(draft, name, value)
        draft.save(update_fields=list(values))  # never status or approval fields
        invoice = draft
        if before != str(result.total):
            InvoiceEvent.objects.create(
                invoice=invoice,
                action="rebuilt",
                actor=user,
                detail={"total": {"before": before, "after": str(result.total)}},
            )

    lines = InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            description=line.description,
            category_id=config.category_ids.get(line.category) if line.category else None,
            billing_code=line.billing_code,
            project_id=line.project,
            person_id=line.person,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            first_date=line.first_date,
            derivation=line.derivation,
        )
        for position, line in enumerate(result.lines, start=1)
    )
    links = [
        InvoiceEntry(
            invoice=invoice,
            line=saved,
            entry_id=p.entry_id,
            state=p.state,
            raw_seconds=p.raw_seconds,
            billed_seconds=p.billed_seconds,
            content_hash=hashes[p.entry_id],
            late_from=p.late_from,
        )
        for saved, line in zip(lines, result.lines, strict=True)
        for p in line.entries
    ]
    links += [
        InvoiceEntry(
            invoice=invoice,
            line=None,
            entry_id=p.entry_id,
            state=p.state,
            raw_seconds=p.raw_seconds,
            pending_reason=p.pending_reason[:300],
            content_hash=hashes[p.entry_id],
            late_from=p.late_from,
        )
        for p in [*result.pending, *result.held]
    ]
    try:
        InvoiceEntry.objects.bulk_create(links, batch_size=5000)
    except IntegrityError as exc:
        raise DraftingError(
            f"an entry of {invoice.client} is already on another live invoice; "
            "void that invoice first if it should be billed here"
        ) from exc
    return invoice
