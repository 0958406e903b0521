"""Requesting a push: an `InvoicePush` row whose `request_id` is derived from the invoice and a
generation is written before anything goes out, and its task is enqueued after commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from integrations import quickbooks as qbo
from invoices.approval import approve_invoice
from invoices.models import (
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoicePush,
    InvoiceStatus,
    QuickBooksConnection,
)
from invoices.quickbooks.connection import require_connected
from invoices.quickbooks.errors import NotConnected, PushRefused
from invoices.quickbooks.mapping import missing_mappings

ACTIVE = (
    InvoicePush.Status.QUEUED,
    InvoicePush.Status.PUSHING,
    InvoicePush.Status.PUSHED,
    InvoicePush.Status.MISMATCH,
)
IN_QUICKBOOKS = (InvoicePush.Status.PUSHED, InvoicePush.Status.MISMATCH)
FINAL_REMOTE_STATUSES = ("voided", "deleted")
PUSH_TASK = "invoices.tasks_quickbooks.push_invoice_task"
OVERRIDE_REASON_MAX_LENGTH = 500


def request_id_for(*, invoice_id: int, generation: int) -> str:
    request_id = f"billables-{invoice_id}-g{generation}"
    if len(request_id) > qbo.REQUEST_ID_MAX_LENGTH:  # 10 + 19 + 2 + 5 digits at most: never
        raise ValueError(f"request id {request_id!r} is longer than QuickBooks allows")
    return request_id


def _check_ready(*, invoice: Invoice, user) -> None:
    if user is not None and not user.has_perm("invoices.add_invoicepush"):
        raise PushRefused(
            "you do not have the permission to send invoices to QuickBooks "
            "(invoices.add_invoicepush)"
        )
    try:
        require_connected(QuickBooksConnection.objects.filter(pk=1).first())
    except (NotConnected, qbo.QuickBooksReconnectRequired) as exc:
        raise PushRefused(str(exc)) from exc
    missing = missing_mappings(invoice=invoice)
    if missing:
        raise PushRefused(missing.message(invoice.label))


@dataclass(frozen=True)
class EarlierOpenInvoice:
    """An earlier invoice of ours, void here, whose QuickBooks invoice is (as last read back)
    still open there and bills entries of the invoice being sent."""

    invoice_id: int
    label: str
    doc_number: str
    qbo_invoice_id: str
    qbo_status: str
    shared_entries: int

    def describe(self) -> str:
        verb = "is" if self.shared_entries == 1 else "are"
        return (
            f"{self.shared_entries} of its entries {verb} still billed on "
            f"QuickBooks invoice {self.doc_number} (id {self.qbo_invoice_id}, "
            f"{self.qbo_status or 'open'} there) of {self.label}, which is void here"
        )

    def as_detail(self) -> dict[str, object]:
        return {
            "invoice_id": self.invoice_id,
            "label": self.label,
            "doc_number": self.doc_number,
            "qbo_invoice_id": self.qbo_invoice_id,
            "qbo_status": self.qbo_status,
            "shared_entries": self.shared_entries,
        }


def earlier_open_invoices(invoice: Invoice) -> list[EarlierOpenInvoice]:
    """Our voided invoices that billed any of `invoice`'s billed entries and whose QuickBooks
    invoice is not known to be voided or deleted there: sending `invoice` would leave two open
    QuickBooks invoices for the same hours."""
    entry_ids = InvoiceEntry.objects.filter(
        invoice=invoice, state=InvoiceEntry.State.BILLED
    ).values("entry_id")
    pushes = list(
        InvoicePush.objects.filter(
            status__in=IN_QUICKBOOKS,
            invoice__status=InvoiceStatus.VOID,
            invoice__entry_links__entry_id__in=entry_ids,
        )
        .exclude(invoice_id=invoice.pk)
        .exclude(qbo_invoice_id="")
        .exclude(qbo_status__in=FINAL_REMOTE_STATUSES)
        .select_related("invoice")
        .distinct()
        .order_by("invoice_id", "generation")
    )
    if not pushes:
        return []
    shared = dict(
        InvoiceEntry.objects.filter(
            invoice_id__in={p.invoice_id for p in pushes}, entry_id__in=entry_ids
        )
        .values("invoice_id")
        .annotate(n=Count("entry_id", distinct=True))
        .values_list("invoice_id", "n")
    )
    return [
        EarlierOpenInvoice(
            invoice_id=p.invoice_id,
            label=p.invoice.label,
            doc_number=p.doc_number,
            qbo_invoice_id=p.qbo_invoice_id,
            qbo_status=p.qbo_status,
            shared_entries=shared.get(p.invoice_id, 0),
        )
        for p in pushes
    ]


def _open_elsewhere_message(invoice: Invoice, earlier: list[EarlierOpenInvoice]) -> str:
    named = "; ".join(e.describe() for e in earlier)
    labels = ", ".join(e.label for e in earlier)
    return (
        f"{invoice.label} is not sent to QuickBooks: {named}. Sending it would leave two open "
        f"QuickBooks invoices for the same hours. Void the earlier one in QuickBooks first "
        f'(the button "Void in QuickBooks" on the page of {labels}, or in QuickBooks '
        "itself and then read the statuses back), or send this one anyway with a reason "
        "(override)."
    )


def request_push(*, invoice: Invoice, user, override_reason: str = "") -> InvoicePush:
    """Queue an approved invoice for QuickBooks; a failed one gets a new generation (retry).
    Returns the queued push, or the one already queued.

    Refused while entries of the invoice are still billed on the open QuickBooks invoice of an
    earlier invoice of ours that was voided here, unless `override_reason` says why it should
    go anyway (recorded, with who, as a `qbo_push_override` event)."""
    override_reason = override_reason.strip()
    with transaction.atomic():
        current = Invoice.objects.select_for_update().select_related("client").get(pk=invoice.pk)
        if current.status != InvoiceStatus.APPROVED:
            raise PushRefused(
                f"{current.label} is {current.get_status_display().lower()}; "
                "only approved invoices go to QuickBooks"
            )
        active = current.pushes.filter(status__in=ACTIVE).first()
        if active is not None and active.status in IN_QUICKBOOKS:
            raise PushRefused(
                f"{current.label} is already in QuickBooks (invoice {active.doc_number}, id "
                f"{active.qbo_invoice_id}); it is never sent twice"
            )
        if active is not None:
            return active  # already queued or being sent
        _check_ready(invoice=current, user=user)
        earlier = earlier_open_invoices(current)
        if earlier and not override_reason:
            raise PushRefused(_open_elsewhere_message(current, earlier))
        if earlier and user is None:
            raise PushRefused("an override is made by a person, with a reason; none was given")
        generation = (current.pushes.aggregate(g=Max("generation"))["g"] or 0) + 1
        push = InvoicePush.objects.create(
            invoice=current,
            generation=generation,
            requested_by=user,
            request_id=request_id_for(invoice_id=current.pk, generation=generation),
        )
        if earlier:
            InvoiceEvent.objects.create(
                invoice=current,
                action="qbo_push_override",
                actor=user,
                detail={
                    "reason": override_reason[:OVERRIDE_REASON_MAX_LENGTH],
                    "request_id": push.request_id,
                    "earlier": [e.as_detail() for e in earlier],
                },
            )
        InvoiceEvent.objects.create(
            invoice=current,
            action="qbo_push_requested",
            actor=user,
            detail={
                "request_id": push.request_id,
                "generation": generation,
                **({"override": True} if earlier else {}),
            },
        )
        transaction.on_commit(lambda: enqueue_push(push_id=push.pk))
    return push


def approve_and_push(*, invoice: Invoice, user) -> InvoicePush:
    """Approve and send to QuickBooks, both or neither: a missing mapping keeps the draft."""
    with transaction.atomic():
        _check_ready(invoice=invoice, user=user)
        # Checked on the draft too, so the refusal names the draft, not a number the rolled-back
        # approval gave and took back (request_push checks it again under the lock).
        earlier = earlier_open_invoices(invoice)
        if earlier:
            raise PushRefused(_open_elsewhere_message(invoice, earlier))
        approved = approve_invoice(invoice=invoice, user=user)
        return request_push(invoice=approved, user=user)


def push_again(*, invoice: Invoice, user) -> InvoicePush:
    """The explicit action after the QuickBooks invoice was voided or deleted there: the old
    push is closed and a new generation creates a new QuickBooks invoice."""
    with transaction.atomic():
        Invoice.objects.select_for_update().get(pk=invoice.pk)
        done = invoice.pushes.select_for_update().filter(status__in=IN_QUICKBOOKS).first()
        if done is None or done.qbo_status not in FINAL_REMOTE_STATUSES:
            raise PushRefused(
                f"{invoice.label} can be sent again only after its QuickBooks invoice was "
                "voided or deleted there (as last read back)"
            )
        # The model has no "superseded" status; failed is the one that frees the invoice for a
        # new generation, and the note says what happened.
        done.status = InvoicePush.Status.FAILED
        done.last_error = (
            f"{done.qbo_status.capitalize()} in QuickBooks; replaced by a new push on request"
        )
        done.save(update_fields=["status", "last_error"])
        return request_push(invoice=invoice, user=user)


def enqueue_push(*, push_id: int) -> None:
    from django_q.tasks import async_task

    async_task(PUSH_TASK, push_id, group="quickbooks-push")


def resume_waiting_pushes() -> int:
    """Enqueue every queued or interrupted push again (after reconnecting). Safe to run any
    time: a push that is done stays done."""
    ids = list(
        InvoicePush.objects.filter(
            status__in=[InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING]
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for push_id in ids:
        enqueue_push(push_id=push_id)
    return len(ids)


def resume_stalled_pushes(*, older_than: timedelta = timedelta(minutes=15)) -> int:
    """Re-enqueue pushes left queued or pushing (a killed worker, a lost task, a lock wait that
    timed out) for longer than `older_than`, while QuickBooks is connected."""
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    if conn is None or conn.status != QuickBooksConnection.Status.CONNECTED:
        return 0
    ids = list(
        InvoicePush.objects.filter(
            status__in=[InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING],
            created_at__lt=timezone.now() - older_than,
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for push_id in ids:
        enqueue_push(push_id=push_id)
    return len(ids)
