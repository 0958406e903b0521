"""Voiding in QuickBooks the invoice of an invoice of ours that was voided here.

Voiding here releases the invoice's entries for the next draft; while the QuickBooks invoice
stays open, the client can still be asked to pay those hours, and the next draft's push is
refused (`queueing.earlier_open_invoices`). `void_in_quickbooks` asks for the QuickBooks void
(an audited request, its task enqueued on commit); `void_pushed_invoice` does it, safe to run
any number of times: it reads the QuickBooks invoice first, so a second run, or a run after a
lost answer, sees it already voided and sends nothing. The outcome is stored on the push row
(`qbo_status` "voided") and as an invoice event.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from integrations import quickbooks as qbo
from invoices.models import Invoice, InvoiceEvent, InvoicePush, InvoiceStatus, QuickBooksConnection
from invoices.quickbooks import pushing
from invoices.quickbooks.connection import require_connected, with_api
from invoices.quickbooks.errors import NotConnected, PushBusy, PushRefused
from invoices.quickbooks.queueing import FINAL_REMOTE_STATUSES, IN_QUICKBOOKS
from invoices.two_factor import TWO_FACTOR_NEEDED, is_verified, two_factor_required

logger = logging.getLogger(__package__)

VOID_TASK = "invoices.tasks_quickbooks.void_in_quickbooks_task"
STALE_OBJECT = "5010"  # QuickBooks' fault for a SyncToken that is not the current one
PAYMENT_STATUSES = ("paid", "partial")


def open_push(invoice: Invoice) -> InvoicePush | None:
    """The push of `invoice` whose QuickBooks invoice is, as last read back, still open there
    (not voided, not deleted)."""
    return (
        invoice.pushes.filter(status__in=IN_QUICKBOOKS)
        .exclude(qbo_invoice_id="")
        .exclude(qbo_status__in=FINAL_REMOTE_STATUSES)
        .order_by("-generation")
        .first()
    )


def void_in_quickbooks(*, invoice: Invoice, user) -> InvoicePush:
    """Ask for the QuickBooks invoice of `invoice` (void here, pushed) to be voided there. The
    void runs in a task after commit; the request is recorded with who asked."""
    if user is None or not user.has_perm("invoices.void_invoice"):
        raise PushRefused("you do not have the permission to void invoices (invoices.void_invoice)")
    if two_factor_required() and not is_verified(user):
        raise PushRefused(TWO_FACTOR_NEEDED)
    with transaction.atomic():
        current = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if current.status != InvoiceStatus.VOID:
            raise PushRefused(
                f"{current.label} is {current.get_status_display().lower()} here; void it here "
                "first, then in QuickBooks"
            )
        row = open_push(current)
        if row is None:
            done = (
                current.pushes.filter(
                    status__in=IN_QUICKBOOKS, qbo_status__in=FINAL_REMOTE_STATUSES
                )
                .order_by("-generation")
                .first()
            )
            if done is not None:
                raise PushRefused(
                    f"QuickBooks invoice {done.doc_number} of {current.label} is already "
                    f"{done.qbo_status} there; nothing to void"
                )
            raise PushRefused(
                f"{current.label} was never sent to QuickBooks; nothing to void there"
            )
        try:
            require_connected(QuickBooksConnection.objects.filter(pk=1).first())
        except (NotConnected, qbo.QuickBooksReconnectRequired) as exc:
            raise PushRefused(str(exc)) from exc
        InvoiceEvent.objects.create(
            invoice=current,
            action="qbo_void_requested",
            actor=user,
            detail={
                "qbo_invoice_id": row.qbo_invoice_id,
                "doc_number": row.doc_number,
                "request_id": row.request_id,
            },
        )
        push_id, user_id = row.pk, user.pk
        transaction.on_commit(lambda: enqueue_void(push_id=push_id, user_id=user_id))
    return row


def enqueue_void(*, push_id: int, user_id: int | None) -> None:
    from django_q.tasks import async_task

    async_task(VOID_TASK, push_id, user_id, group="quickbooks-void")


def void_pushed_invoice(*, push_id: int, user_id: int | None = None) -> InvoicePush:
    """Void the push's QuickBooks invoice. Safe to run any number of times: a row already
    voided (or deleted) there is left alone, and QuickBooks is read before anything is sent."""
    row = InvoicePush.objects.get(pk=push_id)
    if row.qbo_status in FINAL_REMOTE_STATUSES:
        return row
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    try:
        require_connected(conn)
        # One write at a time per company, paced, as pushes are.
        with pushing.realm_lock(conn.realm_id):
            return _void_locked(push_id, user_id)
    except (NotConnected, qbo.QuickBooksReconnectRequired, PushBusy) as exc:
        return _void_failed(row, str(exc), user_id)


def _void_locked(push_id: int, user_id: int | None) -> InvoicePush:
    row = InvoicePush.objects.select_related("invoice").get(pk=push_id)
    if row.qbo_status in FINAL_REMOTE_STATUSES or row.status not in IN_QUICKBOOKS:
        return row  # done by an earlier run, or replaced by a newer push
    if row.invoice.status != InvoiceStatus.VOID:
        return _void_failed(
            row,
            f"{row.invoice.label} is {row.invoice.get_status_display().lower()} here; "
            "its QuickBooks invoice was left as it is",
            user_id,
        )
    max_tries = int(getattr(settings, "QBO_PUSH_MAX_TRIES", 5))
    deadline = time.monotonic() + getattr(settings, "QBO_PUSH_TIME_BUDGET_SECONDS", 300)
    last: qbo.QuickBooksError | None = None
    for attempt in range(1, max_tries + 1):
        try:
            # Read first: the current SyncToken, and whether an earlier run (or someone in
            # QuickBooks) already voided it.
            found = with_api(lambda api: api.read_invoices([row.qbo_invoice_id]))
            if not found:
                return _record(row, None, user_id)
            remote = found[0]
            if remote.status == "voided":
                return _record(row, remote, user_id, already=True)
            if remote.status in PAYMENT_STATUSES:
                return _void_failed(
                    row,
                    f"QuickBooks invoice {row.doc_number} has a payment applied ({remote.status} "
                    "there) and QuickBooks does not void it: remove the payment in QuickBooks, "
                    "then void it there",
                    user_id,
                    remote=remote,
                )
            voided = with_api(
                lambda api, remote=remote: api.void_invoice(remote.id, sync_token=remote.sync_token)
            )
            return _record(row, voided, user_id)
        except qbo.QuickBooksValidationError as exc:
            if exc.code != STALE_OBJECT:
                return _void_failed(row, exc.message, user_id)
            last = exc  # changed in QuickBooks between our read and the void: read again
        except (
            qbo.QuickBooksThrottled,
            qbo.QuickBooksTransientError,
            qbo.QuickBooksAuthExpired,  # refused again right after a refresh
        ) as exc:
            last = exc
            delay = pushing._backoff_seconds(attempt, exc)
            if attempt == max_tries or time.monotonic() + delay > deadline:
                break
            pushing._sleep(delay)
        except (qbo.QuickBooksReconnectRequired, NotConnected, qbo.QuickBooksConfigError) as exc:
            return _void_failed(row, getattr(exc, "message", str(exc)), user_id)
    assert last is not None
    return _void_failed(
        row,
        f"{last.message}. Gave up after {max_tries} tries; trying again is safe (QuickBooks is "
        "read before anything is sent)",
        user_id,
    )


def _record(
    row: InvoicePush, remote: qbo.RemoteInvoice | None, user_id: int | None, *, already=False
) -> InvoicePush:
    """Store that the QuickBooks invoice is voided there (or was deleted there meanwhile)."""
    status = "voided" if remote is not None else "deleted"
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().get(pk=row.pk)
        before = row.qbo_status
        row.qbo_status = status
        row.status_checked_at = timezone.now()
        if remote is not None:
            row.sync_token = remote.sync_token
        row.save(update_fields=["qbo_status", "status_checked_at", "sync_token"])
        InvoiceEvent.objects.create(
            invoice_id=row.invoice_id,
            action="qbo_voided" if remote is not None else "qbo_status",
            actor=_user(user_id),
            detail={
                "qbo_invoice_id": row.qbo_invoice_id,
                "doc_number": row.doc_number,
                "status": {"before": before, "after": status},
                "already": already,
            },
        )
    return row


def _void_failed(
    row: InvoicePush,
    message: str,
    user_id: int | None,
    *,
    remote: qbo.RemoteInvoice | None = None,
) -> InvoicePush:
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().get(pk=row.pk)
        if remote is not None and remote.status != row.qbo_status:
            row.qbo_status = remote.status
            row.sync_token = remote.sync_token
            row.status_checked_at = timezone.now()
            row.save(update_fields=["qbo_status", "status_checked_at", "sync_token"])
        InvoiceEvent.objects.create(
            invoice_id=row.invoice_id,
            action="qbo_void_failed",
            actor=_user(user_id),
            detail={
                "qbo_invoice_id": row.qbo_invoice_id,
                "doc_number": row.doc_number,
                "error": message,
            },
        )
    logger.warning("voiding QuickBooks invoice %s failed: %s", row.qbo_invoice_id, message)
    return row


def _user(user_id: int | None):
    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id).first()


def last_void_event(invoice: Invoice) -> InvoiceEvent | None:
    """The newest request for, or failure of, a QuickBooks void of `invoice`: the admin says
    "asked for, waiting" or "failed: why" while its QuickBooks invoice is still open."""
    return (
        invoice.events.filter(action__in=["qbo_void_requested", "qbo_void_failed"])
        .order_by("-at", "-id")
        .first()
    )
