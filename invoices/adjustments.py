"""A reviewer's adjustments of what a month bills (billing semantics 10.4).

- `adjust_entry` / `clear_adjustment`: an entry's billed hours set by hand (a write-down or a
  write-up), with a required reason. The entry then bills exactly that duration (no minimum,
  no increment); its line's derivation shows the standard value, the adjustment, who and why.
  The adjustment is keyed by the entry, so it survives rebuilds and re-imports; when the
  source's hours change after it, the entry waits for review with its adjustment kept, and
  saving the adjustment again confirms it for the new hours.
- `add_manual_line` / `remove_manual_line`: a fixed fee, expense or credit on the client's
  invoice of a period, kept beside the draft so every rebuild includes it; approval records
  the invoice that billed it, and from then on it cannot change (a void releases it to the
  successor draft).

Each change commits with the stale mark of the drafts it affects (database triggers,
`invoices.guards`), so a crash before the rebuild never lets a draft be approved unrebuilt;
the draft is rebuilt after the commit, as a reviewer's correction is (`invoices.review`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from django.db import transaction
from django.db.models import Q

from invoices.core.rounding import hours_to_seconds, round_money, round_quantity
from invoices.drafting import Period, draft_invoices, rebuild_invoice
from invoices.errors import BillingError
from invoices.models import (
    BillingCode,
    Category,
    ClientPolicy,
    EntryAdjustment,
    Invoice,
    InvoiceEvent,
    InvoiceStatus,
    ManualLine,
)
from timesheets.models import Client, Project, TimeEntry

MAX_BILLED_HOURS = Decimal(24)
REASON_MAX = 300
QUANTITY_PLACES = 4
PRICE_PLACES = 2
# decimal(14, 4) and decimal(12, 2): what the columns hold before their decimals.
QUANTITY_LIMIT = Decimal(10) ** 10
PRICE_LIMIT = Decimal(10) ** 10


class AdjustmentRefused(BillingError):
    """The adjustment cannot be made; the message says why, for the reviewer."""


# --- Write-down / write-up of one entry ---------------------------------------------------------


def adjust_entry(*, entry: TimeEntry, user, billed_hours: Decimal, reason: str) -> Invoice | None:
    """Set what `entry` bills to `billed_hours` (a write-down or write-up), with a reason.
    Saving it again for an entry whose hours changed at the source confirms it for the new
    hours. Returns the entry's draft, rebuilt (None when the entry is on no draft)."""
    reason = _reason(reason, "a write-down or write-up")
    hours = _decimal(billed_hours, "billed hours")
    if hours < 0:
        raise AdjustmentRefused(f"billed hours cannot be negative (got {hours} h)")
    if hours > MAX_BILLED_HOURS:
        raise AdjustmentRefused(
            f"billed hours cannot exceed {MAX_BILLED_HOURS} h for one entry (got {hours} h)"
        )
    with transaction.atomic():
        current = _lock_unlocked_entry(entry)
        adjustment = EntryAdjustment.objects.filter(entry=current).first()
        before = _adjustment_detail(adjustment)
        adjustment, _ = EntryAdjustment.objects.update_or_create(
            entry=current,
            defaults={
                "billed_seconds": hours_to_seconds(hours),
                # What the entry said when the reviewer decided: a later source change is
                # flagged for review against it (section 10.4).
                "source_seconds": current.duration_seconds,
                "reason": reason,
                "made_by": user,
            },
        )
        draft = _entry_draft(current)
        if draft is not None:
            InvoiceEvent.objects.create(
                invoice=draft,
                action="entry adjusted",
                actor=user,
                detail={
                    "entry": current.key,
                    "before": before,
                    "after": _adjustment_detail(adjustment),
                    "reason": reason,
                },
            )
    return rebuild_invoice(draft, user=user) if draft is not None else None


def clear_adjustment(*, entry: TimeEntry, user) -> Invoice | None:
    """Remove the entry's write-down or write-up: it bills its standard hours again. Returns
    the entry's draft, rebuilt (None when the entry is on no draft)."""
    with transaction.atomic():
        current = _lock_unlocked_entry(entry)
        adjustment = EntryAdjustment.objects.filter(entry=current).first()
        if adjustment is None:
            raise AdjustmentRefused(
                f"the entry of {current.date:%Y-%m-%d} ({current.person.name}) has no "
                "write-down or write-up to clear"
            )
        before = _adjustment_detail(adjustment)
        adjustment.delete()
        draft = _entry_draft(current)
        if draft is not None:
            InvoiceEvent.objects.create(
                invoice=draft,
                action="adjustment cleared",
                actor=user,
                detail={"entry": current.key, "before": before},
            )
    return rebuild_invoice(draft, user=user) if draft is not None else None


def _lock_unlocked_entry(entry: TimeEntry) -> TimeEntry:
    # Under the entry's row lock: approval sets `locked` on the same rows, so an adjustment
    # and an approval take turns and a frozen entry is never adjusted.
    current = (
        TimeEntry.all_objects.select_for_update(of=("self",))
        .select_related("person")
        .filter(pk=entry.pk)
        .first()
    )
    if current is None or current.deleted_at is not None:
        raise AdjustmentRefused("the entry was deleted at the source; there is nothing to adjust")
    if current.locked:
        invoice = (
            Invoice.objects.filter(
                entry_links__entry=current,
                entry_links__is_live=True,
                status=InvoiceStatus.APPROVED,
            )
            .values_list("number", flat=True)
            .first()
        )
        raise AdjustmentRefused(
            f"the entry of {current.date:%Y-%m-%d} ({current.person.name}) is billed on "
            f"{invoice or 'an approved invoice'}; its hours cannot be adjusted (void the "
            "invoice first)"
        )
    return current


def _entry_draft(entry: TimeEntry) -> Invoice | None:
    return Invoice.objects.filter(
        entry_links__entry=entry, entry_links__is_live=True, status=InvoiceStatus.DRAFT
    ).first()


def _adjustment_detail(adjustment: EntryAdjustment | None) -> dict | None:
    if adjustment is None:
        return None
    return {
        "billed_seconds": adjustment.billed_seconds,
        "source_seconds": adjustment.source_seconds,
        "reason": adjustment.reason,
    }


# --- Manual lines ---------------------------------------------------------------------------


def add_manual_line(
    *,
    client: Client,
    period: Period,
    user,
    kind: str,
    description: str,
    quantity: Decimal,
    unit_price: Decimal,
    reason: str,
    project: Project | None = None,
    category: Category | None = None,
    billing_code: str = "",
) -> Invoice | None:
    """Add a fixed fee, expense or credit (unit price negative) to the client's invoice of
    `period`. Without a code, the line takes the client's code for its category, else the
    category's. Returns the draft it is on, rebuilt (or created)."""
    if kind not in ManualLine.Kind.values:
        kinds = ", ".join(ManualLine.Kind.values)
        raise AdjustmentRefused(f"unknown kind of manual line {kind!r} (one of: {kinds})")
    label = ManualLine.Kind(kind).label.lower()
    description = (description or "").strip()
    if not description:
        raise AdjustmentRefused(f"a {label} needs a description (what the client reads)")
    reason = _reason(reason, f"a {label}")
    quantity = _decimal(quantity, "quantity", places=QUANTITY_PLACES, limit=QUANTITY_LIMIT)
    unit_price = _decimal(unit_price, "unit price", places=PRICE_PLACES, limit=PRICE_LIMIT)
    if quantity <= 0:
        raise AdjustmentRefused(f"the quantity of a {label} must be above 0 (got {quantity})")
    if kind == ManualLine.Kind.CREDIT and unit_price > 0:
        raise AdjustmentRefused(
            f"a credit lowers the total: its unit price is negative (got {unit_price}, "
            f"did you mean -{unit_price}?)"
        )
    if kind != ManualLine.Kind.CREDIT and unit_price < 0:
        raise AdjustmentRefused(
            f"a {label} cannot have a negative unit price (got {unit_price}); add a credit "
            "to lower the total"
        )
    if project is not None and project.client_id != client.pk:
        raise AdjustmentRefused(f"project {project} is not a project of {client}")
    per_project = _invoiced_per_project(client)
    if per_project and project is None:
        raise AdjustmentRefused(
            f"{client} is invoiced per project: choose the project the {label} is for"
        )
    billing_code = (billing_code or "").strip()
    if len(billing_code) > 20:
        raise AdjustmentRefused(f"billing code {billing_code!r} is longer than 20 characters")
    if not billing_code and category is not None:
        billing_code = (
            BillingCode.objects.filter(client=client, category=category)
            .values_list("code", flat=True)
            .first()
            or category.billing_code
        )
    scope = project.pk if per_project and project is not None else None  # checked above
    with transaction.atomic():
        # Serializes with drafting and approval of the client (both lock this row first).
        Client.objects.select_for_update().get(pk=client.pk)
        live = _scope_invoice(client, period, scope)
        if live is not None and live.status == InvoiceStatus.APPROVED:
            raise AdjustmentRefused(
                f"{live.label} for {period} is approved; add the {label} to a later period's "
                f"draft, or void {live.label} first"
            )
        if kind == ManualLine.Kind.CREDIT:
            _check_credit(live, quantity, unit_price, client, period)
        line = ManualLine.objects.create(
            client=client,
            project=project,
            period_start=period.start,
            period_end=period.end,
            kind=kind,
            description=description,
            quantity=quantity,
            unit_price=unit_price,
            category=category,
            billing_code=billing_code,
            reason=reason,
            made_by=user,
        )
        if live is not None:
            InvoiceEvent.objects.create(
                invoice=live,
                action="manual line added",
                actor=user,
                detail={"manual_line": line.pk, "kind": kind, "reason": reason},
            )
    return _redraft(client.pk, period, scope, user)


def remove_manual_line(*, line: ManualLine, user, reason: str = "") -> Invoice | None:
    """Remove a manual line that no approved invoice has billed. Returns its draft, rebuilt
    (None when nothing is left on it)."""
    with transaction.atomic():
        Client.objects.select_for_update().get(pk=line.client_id)
        current = ManualLine.objects.select_related("invoice", "client").filter(pk=line.pk).first()
        if current is None:
            raise AdjustmentRefused("that manual line was already removed")
        if current.invoice is not None and current.invoice.status == InvoiceStatus.APPROVED:
            raise AdjustmentRefused(
                f"the {current.get_kind_display().lower()} {current.description!r} is billed on "
                f"{current.invoice.label}, which is approved; void {current.invoice.label} first"
            )
        period = Period(current.period_start, current.period_end)
        scope = current.project_id if _invoiced_per_project(current.client) else None
        live = _scope_invoice(current.client, period, scope)
        detail = {
            "manual_line": current.pk,
            "kind": current.kind,
            "description": current.description,
            "amount": str(current.quantity * current.unit_price),
            "reason": (reason or "").strip() or "removed",
        }
        current.delete()
        if live is not None:
            InvoiceEvent.objects.create(
                invoice=live, action="manual line removed", actor=user, detail=detail
            )
    return _redraft(current.client_id, period, scope, user)


def _invoiced_per_project(client: Client) -> bool:
    return bool(
        ClientPolicy.objects.filter(client=client)
        .values_list("invoice_per_project", flat=True)
        .first()
    )


def _scope_invoice(client: Client, period: Period, scope: int | None) -> Invoice | None:
    """The live invoice (draft or approved) the client's manual lines of `period` go on,
    locked: an approval of it (which locks it) and this change take turns, so a line is never
    added beside an approval that commits meanwhile and then billed nowhere."""
    return (
        Invoice.objects.select_for_update()
        .filter(
            Q(project_id=scope) if scope is not None else Q(project__isnull=True),
            client=client,
            period_start=period.start,
            period_end=period.end,
        )
        .exclude(status=InvoiceStatus.VOID)
        .first()
    )


def _check_credit(
    live: Invoice | None, quantity: Decimal, unit_price: Decimal, client: Client, period: Period
) -> None:
    """Section 7.4: a total is never negative. What the draft bills now, plus the credit, must
    stay at or above 0 (a discount or a cap only lessens what a credit takes off)."""
    total = live.total if live is not None else Decimal(0)
    currency = live.currency if live is not None else ""
    credit = round_money(round_quantity(Fraction(quantity)) * unit_price, currency or "USD")
    if total + credit < 0:
        what = f"{live.label} bills {total} {currency}" if live else "nothing is billed yet"
        raise AdjustmentRefused(
            f"a credit of {credit} is more than {client}'s invoice for {period} can take "
            f"({what}); the total cannot be negative"
        )


def _redraft(client_id: int, period: Period, scope: int | None, user) -> Invoice | None:
    summary = draft_invoices(period=period, client_ids=[client_id], user=user)
    return next((inv for inv in summary.invoices if inv.project_id == scope), None)


# --- Input checks ---------------------------------------------------------------------------


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise AdjustmentRefused(f"{what} needs a reason (the derivation shows it)")
    if len(reason) > REASON_MAX:
        raise AdjustmentRefused(
            f"the reason is {len(reason)} characters long; at most {REASON_MAX} are kept"
        )
    return reason


def _decimal(
    value, what: str, *, places: int | None = None, limit: Decimal | None = None
) -> Decimal:
    """A finite Decimal, never a float; with at most `places` decimals (the column would round
    more away) and below `limit`."""
    if isinstance(value, float):
        raise AdjustmentRefused(f"{what} must be an exact decimal, not a float ({value!r})")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise AdjustmentRefused(f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise AdjustmentRefused(f"{what} {value!r} is not a number")
    exponent = number.as_tuple().exponent  # an int: the number is finite
    if places is not None and isinstance(exponent, int) and exponent < -places:
        raise AdjustmentRefused(f"{what} {number} has more than {places} decimals")
    if limit is not None and abs(number) >= limit:
        raise AdjustmentRefused(f"{what} {number} is too large")
    return number
