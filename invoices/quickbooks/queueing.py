"""Requesting a push: an `InvoicePush` row whose `request_id` is derived from the invoice and a
generation is written before anything goes out, and its task is enqueued after commit."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from integrations import quickbooks as qbo
from invoices.approval import approve_invoice
from invoices.models import Invoice, InvoiceEvent, InvoicePush, InvoiceStatus, QuickBooksConnection
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


def request_push(*, invoice: Invoice, user) -> InvoicePush:
    """Queue an approved invoice for QuickBooks; a failed one gets a new generation (retry).
    Returns the queued push, or the one already queued."""
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
        generation = (current.pushes.aggregate(g=Max("generation"))["g"] or 0) + 1
        push = InvoicePush.objects.create(
            invoice=current,
            generation=generation,
            requested_by=user,
            request_id=request_id_for(invoice_id=current.pk, generation=generation),
        )
        InvoiceEvent.objects.create(
            invoice=current,
            action="qbo_push_requested",
            actor=user,
            detail={"request_id": push.request_id, "generation": generation},
        )
        transaction.on_commit(lambda: enqueue_push(push_id=push.pk))
    return push


def approve_and_push(*, invoice: Invoice, user) -> InvoicePush:
    """Approve and send to QuickBooks, both or neither: a missing mapping keeps the draft."""
    with transaction.atomic():
        _check_ready(invoice=invoice, user=user)
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
