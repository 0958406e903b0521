"""The invoice status workflow: one table of allowed transitions, guarded by one function.

    draft    -> approved   (permission invoices.approve_invoice; no pending entries; not stale;
                            every entry still what the draft billed; the build the reviewer saw;
                            when the firm asks for it, not by the last corrector of its entries)
    draft    -> void       (permission invoices.void_invoice)
    approved -> void       (permission invoices.void_invoice; not while a push is under way)

Every transition also needs a two-factor login when the firm requires it (`invoices.two_factor`).

Approving numbers the invoice (billing semantics 10.3), freezes it and locks its entries
(imports then record source changes beside them instead of applying them); held entries leave
it (10.2). Voiding applies the source changes recorded while it was frozen, then releases the
entries for the next draft (section 8).

Locks are taken entries first, then the invoice: an import holds entry rows and then its
trigger marks the entries' draft stale (`invoices.guards`), so both take them in one order.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from invoices.engagement_ledger import EngagementChanged, record_on_approval, reverse_on_void
from invoices.errors import BillingError
from invoices.models import (
    Classification,
    Firm,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceNumberSequence,
    InvoicePush,
    InvoiceStatus,
    ManualLine,
)
from invoices.two_factor import TWO_FACTOR_NEEDED, is_verified, two_factor_required
from timesheets.models import TimeEntry
from timesheets.source_changes import SourceChangeError, apply_pending_source_changes

TRANSITIONS: dict[tuple[str, str], str] = {
    (InvoiceStatus.DRAFT, InvoiceStatus.APPROVED): "invoices.approve_invoice",
    (InvoiceStatus.DRAFT, InvoiceStatus.VOID): "invoices.void_invoice",
    (InvoiceStatus.APPROVED, InvoiceStatus.VOID): "invoices.void_invoice",
}
DEFAULT_NUMBER_TEMPLATE = "INV-{year}-{seq:04}"
# How many changed entries a refusal names before it says "and N more".
NAMED = 5


class InvalidTransition(BillingError):
    """The invoice cannot move to that status now; the message says why."""


def approve_invoice(
    *,
    invoice: Invoice,
    user,
    seen_drafted_at: str | None = None,
    seen_total: Decimal | None = None,
) -> Invoice:
    """Approve a draft. `seen_drafted_at` (the build's `drafted_at.isoformat()`) and
    `seen_total` are what the reviewer was shown; both are compared under the invoice's lock,
    so a rebuild that commits while the reviewer decides is never approved unseen."""
    return _transition(
        invoice=invoice,
        to=InvoiceStatus.APPROVED,
        user=user,
        seen_drafted_at=seen_drafted_at,
        seen_total=seen_total,
    )


def void_invoice(*, invoice: Invoice, user, reason: str = "") -> Invoice:
    return _transition(invoice=invoice, to=InvoiceStatus.VOID, user=user, reason=reason)


def _transition(
    *,
    invoice: Invoice,
    to: str,
    user,
    reason: str = "",
    seen_drafted_at: str | None = None,
    seen_total: Decimal | None = None,
) -> Invoice:
    with transaction.atomic():
        locked_ids = _lock_entries(invoice.pk)
        # Re-read under lock: a concurrent rebuild or approval sees our decision, not a race.
        current = Invoice.objects.select_for_update().get(pk=invoice.pk)
        permission = TRANSITIONS.get((current.status, to))
        if permission is None:
            raise InvalidTransition(
                f"{current.label} is {current.get_status_display().lower()} and cannot be "
                f"made {InvoiceStatus(to).label.lower()}"
            )
        if user is None or not user.has_perm(permission):
            raise InvalidTransition(f"you do not have the permission to do that ({permission})")
        if two_factor_required() and not is_verified(user):
            raise InvalidTransition(TWO_FACTOR_NEEDED)
        links = list(InvoiceEntry.objects.filter(invoice=current).order_by("id"))
        if {link.entry_id for link in links} - locked_ids:
            # A rebuild committed between our reading its entries and locking the invoice.
            raise InvalidTransition(
                f"{current.label} was rebuilt while you acted on it; check it again"
            )
        before = current.status
        now = timezone.now()
        if to == InvoiceStatus.APPROVED:
            _check_seen(current, seen_drafted_at, seen_total)
            _check_approvable(current, links, user)
            held = [link.pk for link in links if link.state == InvoiceEntry.State.HELD]
            # Held entries are not billed here: they leave the invoice, and wait (listed as
            # unbilled with their reason) until a reviewer releases them.
            InvoiceEntry.objects.filter(pk__in=held).delete()
            current.number = _next_number(current)
            # Section 10.4: the manual lines on this draft are billed on it, and frozen with it.
            ManualLine.objects.filter(
                pk__in=[
                    line.derivation["manual_line"]["id"]
                    for line in current.lines.filter(derivation__has_key="manual_line")
                ]
            ).update(invoice=current)
            current.approved_at, current.approved_by = now, user
            _record_engagements(current, user)  # section 13: milestones, retainer ledger
            current.flags = [f for f in current.flags if f != Flag.HELD]
            TimeEntry.objects.filter(
                id__in=[link.entry_id for link in links if link.pk not in held]
            ).update(locked=True)
        else:
            _check_voidable(current)
            current.voided_at, current.voided_by = now, user
            reverse_on_void(invoice=current, user=user)  # section 13.2
            entry_ids = [link.entry_id for link in links]
            InvoiceEntry.objects.filter(invoice=current).update(is_live=False)
            TimeEntry.all_objects.filter(id__in=entry_ids).update(locked=False)
            try:
                applied = apply_pending_source_changes(entry_ids)
            except SourceChangeError as exc:
                raise InvalidTransition(str(exc)) from exc
        current.status = to
        current.save(
            update_fields=[
                "status",
                "number",
                "flags",
                "approved_at",
                "approved_by",
                "voided_at",
                "voided_by",
            ]
        )
        detail = {
            "status": {"before": before, "after": to},
            "total": str(current.total),
            **({"number": current.number} if current.number else {}),
            **({"reason": reason} if reason else {}),
        }
        if to == InvoiceStatus.VOID and applied.ids:
            detail["source_changes_applied"] = {
                "edited": len(applied.edited),
                "deleted": len(applied.deleted),
            }
        InvoiceEvent.objects.create(invoice=current, action=to, actor=user, detail=detail)
        if to == InvoiceStatus.VOID and applied.edited:
            _reclassify(applied.edited)
    return current


def _record_engagements(invoice: Invoice, user) -> None:
    try:
        record_on_approval(invoice=invoice, user=user)
    except EngagementChanged as exc:
        raise InvalidTransition(str(exc)) from exc


def _lock_entries(invoice_id: int) -> set[int]:
    ids = list(
        InvoiceEntry.objects.filter(invoice_id=invoice_id)
        .order_by("entry_id")
        .values_list("entry_id", flat=True)
    )
    return set(
        TimeEntry.all_objects.select_for_update()
        .filter(id__in=ids)
        .order_by("id")
        .values_list("id", flat=True)
    )


def _check_seen(invoice: Invoice, seen_drafted_at: str | None, seen_total: Decimal | None) -> None:
    rebuilt = seen_drafted_at is not None and seen_drafted_at != invoice.drafted_at.isoformat()
    if rebuilt or (seen_total is not None and seen_total != invoice.total):
        raise InvalidTransition(
            f"{invoice.label} was rebuilt after you opened it (total now {invoice.total} "
            f"{invoice.currency}); check it again, then approve"
        )


def _check_approvable(invoice: Invoice, links: Sequence[InvoiceEntry], user) -> None:
    pending = sum(1 for link in links if link.state == InvoiceEntry.State.PENDING)
    if pending:
        raise InvalidTransition(
            f"{invoice.label} has {pending} entr{'y' if pending == 1 else 'ies'} "
            "pending review; resolve them (the draft rebuilds) before approving"
        )
    if Flag.STALE in invoice.flags:
        raise InvalidTransition(
            f"entries of {invoice.label} changed since it was drafted; rebuild it first"
        )
    changed = changed_entries(links)
    if changed:
        named = ", ".join(changed[:NAMED]) + (
            f" and {len(changed) - NAMED} more" if len(changed) > NAMED else ""
        )
        raise InvalidTransition(
            f"{len(changed)} entr{'y' if len(changed) == 1 else 'ies'} of {invoice.label} "
            f"changed since it was drafted ({named}); rebuild it first"
        )
    _check_four_eyes(invoice, user)


def changed_entries(links: Sequence[InvoiceEntry]) -> list[str]:
    """What differs between the draft's links and their entries now: the draft's seconds and
    content hash against the entry's, and entries deleted at the source (section 8)."""
    billed = [link for link in links if link.state != InvoiceEntry.State.HELD]
    entries = TimeEntry.all_objects.in_bulk([link.entry_id for link in billed])
    changed = []
    for link in billed:
        entry = entries.get(link.entry_id)
        if entry is None or entry.deleted_at is not None:
            changed.append(f"entry {link.entry_id} deleted at the source")
        elif entry.duration_seconds != link.raw_seconds:
            changed.append(
                f"{entry.date:%Y-%m-%d} {entry.person.name}: "
                f"{link.raw_seconds // 60} min drafted, {entry.duration_seconds // 60} min now"
            )
        elif entry.content_hash != link.content_hash:
            changed.append(f"{entry.date:%Y-%m-%d} {entry.person.name}: edited at the source")
    return changed


def _check_voidable(invoice: Invoice) -> None:
    in_flight = invoice.pushes.filter(
        status__in=[InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING]
    ).first()
    if in_flight is not None:
        raise InvalidTransition(
            f"{invoice.label} is being sent to QuickBooks (request {in_flight.request_id}, "
            f"{in_flight.get_status_display().lower()}); wait until it is there, then void it "
            "here and in QuickBooks"
        )


def _next_number(invoice: Invoice) -> str:
    """The next number of the invoice's year, gapless: the sequence row is locked until the
    approval commits, and a rolled-back approval gives its number back."""
    template = (
        Firm.objects.filter(pk=1).values_list("invoice_number_template", flat=True).first()
        or DEFAULT_NUMBER_TEMPLATE
    )
    year = invoice.issue_date.year
    InvoiceNumberSequence.objects.bulk_create(
        [InvoiceNumberSequence(year=year)], ignore_conflicts=True
    )
    sequence = InvoiceNumberSequence.objects.select_for_update().get(year=year)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return format_number(template, year=year, seq=sequence.last)


def format_number(template: str, *, year: int, seq: int) -> str:
    """`INV-{year}-{seq:04}` -> INV-2026-0007. A template must name both {year} and {seq}."""
    if "{year" not in template or "{seq" not in template:
        raise InvalidTransition(
            f"the firm's invoice number template {template!r} must contain {{year}} and {{seq}}"
        )
    try:
        number = template.format(year=year, seq=seq)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidTransition(
            f"the firm's invoice number template {template!r} cannot be used: {exc}"
        ) from exc
    if not number or len(number) > 40:
        raise InvalidTransition(f"invoice number {number!r} is empty or over 40 characters")
    return number


def _reclassify(entry_ids: list[int]) -> None:
    # Imported here: classification imports the drafting period helpers, not approval.
    from invoices.classification import classify_entries, entries_to_classify

    classify_entries(entries_to_classify(entry_ids=entry_ids))


def last_corrector(*, invoice: Invoice):
    """Who made the most recent reviewer decision on any entry of the invoice, or None."""
    latest = (
        Classification.objects.filter(
            entry__invoice_links__invoice=invoice,
            entry__invoice_links__is_live=True,
            manual_at__isnull=False,
            manual_by__isnull=False,
        )
        .select_related("manual_by")
        .order_by("-manual_at")
        .first()
    )
    return latest.manual_by if latest is not None else None


def _check_four_eyes(invoice: Invoice, user) -> None:
    """Segregation of duties, when the firm asks for it: the person whose corrections shaped
    the invoice last is not the one who approves it."""
    required = (
        Firm.objects.filter(pk=1).values_list("approver_must_differ_from_corrector", flat=True)
    ).first()
    if not required:
        return
    corrector = last_corrector(invoice=invoice)
    if corrector is not None and corrector.pk == user.pk:
        raise InvalidTransition(
            f"you made the last correction on {invoice.label}; the firm requires another "
            "approver (Firm setting: approver must differ from the last corrector)"
        )
