"""Builds invoice drafts for a period: rows -> `invoices.core` -> Invoice, lines and links.

Clients are drafted in batches (`CLIENTS_PER_TRANSACTION`), each batch in one transaction
under row locks on its clients (taken in id order, so two runs never deadlock), so two drafting
runs for the same client (same or overlapping periods) take turns; the partial unique index
`entry_on_one_live_invoice` is the final guarantee that an entry is never billed twice. A batch
costs a fixed number of queries whatever its number of clients and entries: the inputs load in
three (`invoices.drafting_inputs`), lines and entry links are written by COPY.

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
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists
from django.utils import timezone

from invoices.bulk_copy import allocate_ids, copy_rows
from invoices.classification import classify_entries, entries_to_classify
from invoices.configuration import Configuration, load_configuration
from invoices.core.engagements import Engagement
from invoices.core.pricing import (
    EntryPlacement,
    InvoiceDraft,
    ManualCharge,
    PricedEntry,
    PricingError,
    price_invoice,
)
from invoices.drafting_inputs import (
    DraftInputs,
    approved_invoices_covering_entry,
    hold_reason_of,
    load_engagements,
    load_inputs,
    unbilled_manual_lines,
    unbilled_milestones,
    who,
)
from invoices.errors import BillingError
from invoices.models import (
    Category,
    Classification,
    ClientPolicy,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceLine,
    InvoiceStatus,
)
from timesheets.importing.bulk_updates import update_by_pk
from timesheets.models import Client, TimeEntry

__all__ = [
    "DraftSummary",
    "DraftingError",
    "Period",
    "approved_invoices_covering_entry",
    "draft_invoices",
    "hold_reason",
    "rebuild_invoice",
    "who",
]

# Clients drafted per transaction: large enough that the fixed queries of a batch are spread
# thin, small enough that a batch's locks are held briefly (an approval waits at most a batch).
CLIENTS_PER_TRANSACTION = 200


class DraftingError(BillingError):
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
    *,
    period: Period,
    client_ids: Iterable[int] | None = None,
    user: User | None = None,
    reclassify: bool = True,
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
    for at in range(0, len(ids), CLIENTS_PER_TRANSACTION):
        _draft_batch(ids[at : at + CLIENTS_PER_TRANSACTION], period, config, summary, user)
    return summary


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
    manual = unbilled_manual_lines(period.start, period.end)
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
    # Section 13.1: a fixed fee's milestone due by the period's end bills without time.
    due = unbilled_milestones().filter(due_on__lte=period.end)
    due = due if client_ids is None else due.filter(fixed_fee__project__client_id__in=client_ids)
    ids |= set(due.values_list("fixed_fee__project__client_id", flat=True).distinct())
    return sorted(ids)


def rebuild_invoice(invoice: Invoice, *, user: User | None = None) -> Invoice | None:
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


def hold_reason(
    entry: TimeEntry, classification: Classification | None, policy: ClientPolicy | None
) -> str:
    """Section 10.2 for one entry and its decision (model instances): see `hold_reason_of`."""
    return hold_reason_of(
        source=entry.source,
        tracker_invoiced=entry.tracker_invoiced,
        tracker_approved=entry.tracker_approved,
        decided=classification is not None,
        released=classification is not None and classification.hold_released_at is not None,
        billable=classification is not None and classification.billable,
        needs_review=classification is None or classification.needs_review,
        bill_approved_only=policy is not None and policy.bill_approved_only,
    )


@dataclass
class _Draft:
    """One invoice to write: a client's scope (the whole client, or one project) and its
    priced result; `invoice` is the existing draft it rebuilds, if any."""

    client_id: int
    scope: int | None
    result: InvoiceDraft
    invoice: Invoice | None
    hashes: dict[int, str]


def _draft_batch(
    client_ids: list[int],
    period: Period,
    config: Configuration,
    summary: DraftSummary,
    user: User | None,
) -> None:
    with transaction.atomic():
        # Serializes drafting per client: a concurrent run waits here, then sees our result.
        # Id order: two runs over overlapping clients lock in the same order, never deadlock.
        list(
            Client.objects.select_for_update()
            .filter(pk__in=client_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Locked too: an approval (which locks the invoice) and a rebuild take turns, so a
        # rebuild never overwrites an approval that committed while it ran.
        live = list(
            Invoice.objects.select_for_update()
            .filter(client_id__in=client_ids, period_start=period.start, period_end=period.end)
            .exclude(status=InvoiceStatus.VOID)
            .order_by("pk")
        )
        drafts = {
            (inv.client_id, inv.project_id): inv
            for inv in live
            if inv.status == InvoiceStatus.DRAFT
        }
        frozen = {
            (inv.client_id, inv.project_id) for inv in live if inv.status != InvoiceStatus.DRAFT
        }
        summary.frozen += len(frozen)
        if drafts:
            # Release the drafts' entries; they are re-placed below, in this transaction.
            _release([inv.pk for inv in drafts.values()])

        inputs = load_inputs(
            client_ids=client_ids,
            start=period.start,
            end=period.end,
            bill_approved_only={c: config.policy(c).bill_approved_only for c in client_ids},
        )
        engagements = load_engagements(client_ids=client_ids, start=period.start, end=period.end)
        to_write: list[_Draft] = []
        emptied: list[Invoice] = []
        for client_id in client_ids:
            priced = _price_client(
                client_id,
                inputs.get(client_id),
                drafts,
                frozen,
                period,
                config,
                engagements.get(client_id),
            )
            for scope, result, hashes in priced:
                draft = drafts.get((client_id, scope))
                if result is None:
                    if draft is not None:
                        emptied.append(draft)
                    continue
                to_write.append(_Draft(client_id, scope, result, draft, hashes))
        if emptied:
            Invoice.objects.filter(pk__in=[inv.pk for inv in emptied]).delete()
            summary.removed += len(emptied)
        invoices = _save_invoices(to_write, period, config, user)
        _save_lines_and_links(to_write, invoices, config)
        for item, invoice in zip(to_write, invoices, strict=True):
            summary.invoices.append(invoice)
            if item.invoice is None:
                summary.created += 1
            else:
                summary.rebuilt += 1


def _release(invoice_ids: list[int]) -> None:
    """Delete the drafts' entry links and lines: two statements. (The ORM's `delete()` would
    first fetch every line to cascade to its links, in batches of ids; nothing listens to
    these deletes in Python, and the audit trail and guards are triggers, which run.)"""
    with connection.cursor() as cursor:
        for model in (InvoiceEntry, InvoiceLine):
            cursor.execute(
                f'DELETE FROM "{model._meta.db_table}" WHERE "invoice_id" = ANY(%s)',
                [invoice_ids],
            )


def _price_client(
    client_id: int,
    inputs: DraftInputs | None,
    drafts: dict[tuple[int, int | None], Invoice],
    frozen: set[tuple[int, int | None]],
    period: Period,
    config: Configuration,
    engagement: Engagement | None = None,
) -> list[tuple[int | None, InvoiceDraft | None, dict[int, str]]]:
    """Each scope of the client (its drafts, and the scopes its entries and manual lines fall
    in) with its priced result, or None when the scope has nothing to bill, review or hold."""
    policy = config.policy(client_id)
    scopes: dict[int | None, list[PricedEntry]] = defaultdict(list)
    manual: dict[int | None, list[ManualCharge]] = defaultdict(list)
    if inputs is not None:
        for entry in inputs.entries:
            scope = entry.project if policy.invoice_per_project else None
            if (client_id, scope) not in frozen:  # approved: late entries wait for a new period
                scopes[scope].append(entry)
        for charge in inputs.manual:
            scope = charge.project if policy.invoice_per_project else None
            if (client_id, scope) not in frozen:
                manual[scope].append(charge)
    in_scope = {s for (c, s) in drafts if c == client_id} | set(scopes) | set(manual)
    fees = _fee_scopes(engagement, policy.invoice_per_project, client_id, frozen)
    in_scope |= fees
    priced: list[tuple[int | None, InvoiceDraft | None, dict[int, str]]] = []
    for scope in sorted(in_scope, key=lambda s: (s is not None, s or 0)):
        entries, charges = scopes.get(scope, []), manual.get(scope, [])
        try:
            result = (entries or charges or scope in fees) and price_invoice(
                entries,
                policy=policy,
                rates=config.rates,
                client=client_id,
                manual=charges,
                taxes=config.tax(client_id),
                engagement=engagement.for_scope(scope) if engagement else None,
            )
        except PricingError as exc:
            name = Client.objects.get(pk=client_id).name
            raise DraftingError(f"{name}, {period}: {exc}") from exc
        if not result or not (result.placements or result.lines):
            # Nothing to bill, review or hold (at most non-billable time that no line shows,
            # e.g. what an import files under its internal client): no invoice. A draft of
            # manual lines only is still a draft (section 10.4).
            priced.append((scope, None, {}))
        else:
            hashes = inputs.hashes if inputs is not None else {}
            priced.append((scope, result, hashes))
    return priced


def _fee_scopes(
    engagement: Engagement | None,
    per_project: bool,
    client_id: int,
    frozen: set[tuple[int, int | None]],
) -> set[int | None]:
    """Section 13.1: the scopes with a milestone due (an invoice even without time)."""
    if engagement is None:
        return set()
    scopes = {p if per_project else None for p in engagement.fixed_fees}
    return {
        s for s in scopes if (client_id, s) not in frozen and engagement.for_scope(s).has_due_fees()
    }


def _invoice_values(
    item: _Draft, period: Period, config: Configuration, now: dt.datetime
) -> dict[str, Any]:
    policy = config.policy(item.client_id)
    issue = period.end
    return {
        "currency": policy.currency,
        "issue_date": issue,
        "due_date": issue + dt.timedelta(days=policy.payment_terms_days),
        "subtotal": item.result.subtotal,
        "adjustments": item.result.adjustments,
        "discount": item.result.discount,
        "total": item.result.total,
        "tax_total": item.result.tax.total,
        "tax_summary": item.result.tax.summary_json(),
        "flags": [Flag(f) for f in item.result.flags],
        "policy_snapshot": policy.snapshot(),
        "drafted_at": now,
    }


def _save_invoices(
    items: list[_Draft], period: Period, config: Configuration, user: User | None
) -> list[Invoice]:
    """Create the new drafts and update the rebuilt ones (never their status or approval
    fields), with a "drafted" event for each new one and a "rebuilt" event for each whose
    total changed: five queries at most, whatever the number of invoices."""
    now = timezone.now()
    created, updated, events = [], [], []
    for item in items:
        values = _invoice_values(item, period, config, now)
        if item.invoice is None:
            created.append(
                Invoice(
                    client_id=item.client_id,
                    project_id=item.scope,
                    period_start=period.start,
                    period_end=period.end,
                    **values,
                )
            )
        else:
            before = str(item.invoice.total)
            for name, value in values.items():
                setattr(item.invoice, name, value)
            updated.append(item.invoice)
            if before != str(item.result.total):
                events.append(
                    InvoiceEvent(
                        invoice=item.invoice,
                        action="rebuilt",
                        actor=user,
                        detail={"total": {"before": before, "after": str(item.result.total)}},
                    )
                )
    if updated:
        fields = list(_invoice_values(items[0], period, config, now))
        # One UPDATE ... FROM VALUES per chunk (bulk_update's CASE per row and field cost
        # more than drafting 2,000 invoices).
        update_by_pk(updated, fields, batch_size=1000)
    Invoice.objects.bulk_create(created, batch_size=500)
    events += [
        InvoiceEvent(
            invoice=invoice, action="drafted", actor=user, detail={"total": str(invoice.total)}
        )
        for invoice in created
    ]
    InvoiceEvent.objects.bulk_create(events, batch_size=500)
    new = iter(created)
    return [item.invoice if item.invoice is not None else next(new) for item in items]


LINE_FIELDS = (
    "id",
    "invoice_id",
    "position",
    "kind",
    "description",
    "category_id",
    "billing_code",
    "project_id",
    "person_id",
    "quantity",
    "unit_price",
    "amount",
    "first_date",
    "derivation",
    "tax_code",
    "tax_base",
    "tax_amount",
)
LINK_FIELDS = (
    "invoice_id",
    "line_id",
    "entry_id",
    "state",
    "pending_reason",
    "is_live",
    "raw_seconds",
    "billed_seconds",
    "content_hash",
    "late_from",
)


def _save_lines_and_links(
    items: list[_Draft], invoices: list[Invoice], config: Configuration
) -> None:
    """Every line and entry link of the batch, by COPY (two statements, so the statement
    triggers of the guards and audit trail run twice, not once per invoice)."""
    ids = iter(allocate_ids(InvoiceLine, sum(len(item.result.lines) for item in items)))
    utbms = _utbms_defaults()
    lines, links = [], []
    for item, invoice in zip(items, invoices, strict=True):
        for position, line in enumerate(item.result.lines, start=1):
            line_id = next(ids)
            tax = item.result.tax.line(position - 1)
            category = config.category_ids.get(line.category) if line.category else None
            lines.append(
                (
                    line_id,
                    invoice.pk,
                    position,
                    str(line.kind),
                    line.description,
                    category,
                    line.billing_code,
                    line.project,
                    line.person,
                    line.quantity,
                    line.unit_price,
                    line.amount,
                    line.first_date,
                    _with_utbms(line.derivation, utbms.get(line.category or "")),
                    (tax.code.name if tax and tax.code else ""),
                    tax.base if tax else None,
                    tax.amount if tax else None,
                )
            )
            links += [_link(invoice.pk, line_id, p, item.hashes, "") for p in line.entries]
        links += [
            _link(invoice.pk, None, p, item.hashes, p.pending_reason[:300])
            for p in [*item.result.pending, *item.result.held]
        ]
    copy_rows(InvoiceLine, LINE_FIELDS, lines)
    try:
        with transaction.atomic():  # a savepoint: the batch's transaction stays usable
            copy_rows(InvoiceEntry, LINK_FIELDS, links)
    except IntegrityError as exc:
        raise DraftingError(_already_billed(links)) from exc


def _utbms_defaults() -> dict[str, dict[str, str]]:
    """Each category's UTBMS task and activity defaults (section 11), by key: written into
    the line's derivation when drafted, so an approved invoice's LEDES codes are the ones it
    was approved with, whatever the category says later (one query)."""
    defaults = {}
    rows = Category.objects.values_list("key", "utbms_task_code", "utbms_activity_code")
    for key, task, activity in rows:
        if task or activity:
            defaults[key] = {"task": task, "activity": activity}
    return defaults


def _with_utbms(derivation: dict[str, Any], codes: dict[str, str] | None) -> dict[str, Any]:
    return derivation if not codes else {**derivation, "utbms_defaults": codes}


Link = tuple[Any, ...]  # an entry link's values, in the order of LINK_FIELDS


def _link(
    invoice_id: int,
    line_id: int | None,
    placement: EntryPlacement,
    hashes: dict[int, str],
    reason: str,
) -> Link:
    return (
        invoice_id,
        line_id,
        placement.entry_id,
        str(placement.state),
        reason,
        True,
        placement.raw_seconds,
        placement.billed_seconds if line_id is not None else 0,
        hashes[placement.entry_id],
        placement.late_from,
    )


def _already_billed(links: list[Link]) -> str:
    """Which entries of the batch another live invoice holds (a concurrent writer got there
    first), for a message ops staff can act on."""
    ours = {link[0] for link in links}
    taken = (
        InvoiceEntry.objects.filter(entry_id__in=[link[2] for link in links], is_live=True)
        .exclude(invoice_id__in=ours)
        .select_related("invoice__client")
        .order_by("entry_id")[:5]
    )
    where = "; ".join(
        f"entry {t.entry_id} on {t.invoice.label} ({t.invoice.client})" for t in taken
    )
    return (
        f"an entry is already on another live invoice ({where or 'just now'}); "
        "void that invoice first if it should be billed here"
    )
