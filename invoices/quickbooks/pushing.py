"""One push to QuickBooks, safe to run any number of times: a pushed row is never sent again,
every retry of a row sends the same `requestid`, one push at a time per QuickBooks company,
throttling and transient failures retried with backoff (see the package doc)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from integrations import quickbooks as qbo
from invoices.models import (
    Flag,
    Invoice,
    InvoiceEvent,
    InvoicePush,
    InvoiceStatus,
    QuickBooksConnection,
)
from invoices.quickbooks.connection import access_token, api_for, require_connected
from invoices.quickbooks.errors import NotConnected, PushBusy, PushRefused
from invoices.quickbooks.invoice_payload import invoice_input, total_mismatch

# The package's logger: records are named invoices.quickbooks whichever module logs them.
logger = logging.getLogger(__package__)

LOCK_NAMESPACE = "billables-qbo-push"

# Indirection so tests can count or skip waits without patching the time module.
_sleep: Callable[[float], None] = time.sleep


@contextmanager
def realm_lock(realm_id: str) -> Iterator[None]:
    """One push at a time per QuickBooks company, across every worker process. A session-level
    advisory lock: released on unlock, or by PostgreSQL when a killed worker's connection
    closes. Before handing over, wait until this process's pacing allows the next request."""
    wait_seconds = getattr(settings, "QBO_PUSH_LOCK_WAIT_SECONDS", 180)
    try:
        # Wait in PostgreSQL (no polling); lock_timeout bounds the wait, for this statement's
        # transaction only. The lock itself is session-level and outlives the transaction.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{int(wait_seconds * 1000)}ms"]
            )
            cursor.execute(
                "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))", [LOCK_NAMESPACE, realm_id]
            )
    except OperationalError as exc:
        raise PushBusy(
            f"another push to QuickBooks company {realm_id} held the lock for over "
            f"{wait_seconds:.0f} s"
        ) from exc
    try:
        yield
    finally:
        qbo.settle_pacing(realm_id)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", [LOCK_NAMESPACE, realm_id]
            )


def push(*, push_id: int) -> InvoicePush:
    """Send one push to QuickBooks. Safe to run any number of times (see module doc)."""
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    try:
        require_connected(conn)
    except (NotConnected, qbo.QuickBooksReconnectRequired) as exc:
        return _wait_for_connection(push_id, str(exc))
    with realm_lock(conn.realm_id):
        return _push_locked(push_id)


def _push_locked(push_id: int) -> InvoicePush:
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().select_related("invoice").get(pk=push_id)
        if row.status not in (InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING):
            return row  # pushed, mismatch or failed: never sent again by a re-delivered task
        if row.invoice.status != InvoiceStatus.APPROVED:
            return _fail(
                row,
                f"{row.invoice.label} was "
                f"{row.invoice.get_status_display().lower()} before it reached "
                "QuickBooks; nothing was sent",
            )
        row.status = InvoicePush.Status.PUSHING
        row.save(update_fields=["status"])
    invoice = row.invoice
    try:
        payload = invoice_input(invoice=invoice, push=row)
    except PushRefused as exc:
        return _fail(row, str(exc))

    # Ask QuickBooks by number (and our marker) before creating whenever an invoice of ours may
    # already be there: a new generation, or any row that already sent a create whose outcome
    # we never learnt (a lost answer, a timeout, a killed worker left it pushing). The request
    # id alone is not enough: how long Intuit remembers one is not documented, and a forgotten
    # one would create a second invoice.
    reconcile = row.generation > 1 or row.attempts > 0
    max_tries = int(getattr(settings, "QBO_PUSH_MAX_TRIES", 5))
    # Bounded so a run ends well inside the django-q2 timeout (600 s) even while throttled.
    deadline = time.monotonic() + getattr(settings, "QBO_PUSH_TIME_BUDGET_SECONDS", 300)
    last: qbo.QuickBooksError | None = None
    for attempt in range(1, max_tries + 1):
        try:
            realm_id, token = access_token()
            api = api_for(realm_id, token)
            # Counted (and committed) before anything goes out: a worker killed from here on
            # leaves attempts > 0, so the next run asks by number first. A try is the lookup
            # and the create together, so QBO_PUSH_MAX_ATTEMPTS bounds a push even while every
            # lookup fails.
            InvoicePush.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
            row.attempts += 1
            if reconcile:
                existing = _find_existing(api, invoice)
                if existing is not None:
                    return _record(row, existing, reconciled=True)
                reconcile = False
            try:
                created = api.create_invoice(payload, request_id=row.request_id)
            except qbo.QuickBooksAuthExpired:
                realm_id, token = access_token(rejected=token)
                created = api_for(realm_id, token).create_invoice(
                    payload, request_id=row.request_id
                )
            return _record(row, created)
        except (qbo.QuickBooksReconnectRequired, NotConnected) as exc:
            return _wait_for_connection(row.pk, str(exc))
        except (
            qbo.QuickBooksThrottled,
            qbo.QuickBooksTransientError,
            qbo.QuickBooksAuthExpired,
        ) as exc:
            last = exc
            if isinstance(exc, qbo.QuickBooksTransientError) and exc.ambiguous:
                # The create may have been applied: the next try asks by number first.
                reconcile = True
            delay = _backoff_seconds(attempt, exc)
            if attempt == max_tries or time.monotonic() + delay > deadline:
                break
            _sleep(delay)
        except (qbo.QuickBooksValidationError, qbo.QuickBooksConfigError) as exc:
            return _fail(row, exc.message)
    assert last is not None
    if row.attempts < int(getattr(settings, "QBO_PUSH_MAX_ATTEMPTS", 15)):
        # Not given up: the stalled-push sweep runs it again later, with the same request id.
        return _postpone(
            row.pk,
            f"{last.message}. Will try again in a few minutes (after {row.attempts} tries so far).",
        )
    return _fail(
        row,
        f"{last.message}. Gave up after {row.attempts} tries; retrying is safe: "
        "QuickBooks is asked for this invoice by number before anything is "
        "created again",
    )


def _backoff_seconds(attempt: int, error: qbo.QuickBooksError) -> float:
    # Seconds, not money: plain numbers from settings.
    base = getattr(settings, "QBO_RETRY_BASE_SECONDS", 2)
    cap = getattr(settings, "QBO_RETRY_MAX_SECONDS", 60)
    delay = min(cap, base * 2 ** (attempt - 1)) + random.uniform(0, base)
    if isinstance(error, qbo.QuickBooksThrottled):
        if error.retry_after_seconds is not None:
            return max(error.retry_after_seconds, delay)
        return max(getattr(settings, "QBO_THROTTLE_WAIT_SECONDS", 10), delay)
    return delay


def _postpone(push_id: int, message: str) -> InvoicePush:
    """Leave the push queued with a note; the same request id goes out when it runs again
    (reconnecting, or the stalled-push sweep, enqueues it)."""
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().get(pk=push_id)
        if row.status in (InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING):
            row.status = InvoicePush.Status.QUEUED
            row.last_error = message
            row.save(update_fields=["status", "last_error"])
    return row


def _wait_for_connection(push_id: int, reason: str) -> InvoicePush:
    return _postpone(push_id, f"Waiting for QuickBooks: {reason}")


def _fail(row: InvoicePush, message: str) -> InvoicePush:
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().get(pk=row.pk)
        row.status = InvoicePush.Status.FAILED
        row.last_error = message
        row.save(update_fields=["status", "last_error"])
        InvoiceEvent.objects.create(
            invoice_id=row.invoice_id,
            action="qbo_push_failed",
            detail={"request_id": row.request_id, "error": message},
        )
    logger.warning("QuickBooks push %s failed: %s", row.request_id, message)
    return row


def _marker(invoice: Invoice) -> str:
    return f"billables-{invoice.pk}-g"


def _find_existing(api: qbo.QuickBooksApi, invoice: Invoice) -> qbo.RemoteInvoice | None:
    """An earlier generation's QuickBooks invoice: our number, our marker, not voided."""
    for remote in api.find_invoices_by_number(invoice.number):
        if _marker(invoice) in remote.private_note and remote.status != "voided":
            return remote
    return None


def _record(
    row: InvoicePush, remote: qbo.RemoteInvoice, *, reconciled: bool = False
) -> InvoicePush:
    """Store what QuickBooks created; a total that differs from ours to the cent is a
    mismatch and flags the invoice."""
    now = timezone.now()
    with transaction.atomic():
        # Invoice before push, the order request_push and push_again lock them in.
        invoice = Invoice.objects.select_for_update().get(pk=row.invoice_id)
        row = InvoicePush.objects.select_for_update().get(pk=row.pk)
        row.qbo_invoice_id = remote.id
        row.sync_token = remote.sync_token
        row.doc_number = remote.doc_number
        row.qbo_total = remote.total_amount
        row.qbo_status = remote.status
        row.status_checked_at = row.pushed_at = now
        detail = {
            "request_id": row.request_id,
            "qbo_invoice_id": remote.id,
            "doc_number": remote.doc_number,
            "qbo_total": str(remote.total_amount),
            "total": str(invoice.total),
            "reconciled": reconciled,
        }
        # Billing semantics 12.6: ours with tax, and QuickBooks' tax beside ours.
        detail["qbo_tax"] = None if remote.total_tax is None else str(remote.total_tax)
        detail["tax_total"] = str(invoice.tax_total)
        mismatch = total_mismatch(invoice=invoice, remote=remote)
        if mismatch:
            row.status = InvoicePush.Status.MISMATCH
            row.last_error = mismatch
            if Flag.QBO_MISMATCH not in invoice.flags:
                invoice.flags = [*invoice.flags, Flag.QBO_MISMATCH]
                invoice.save(update_fields=["flags"])
            action = "qbo_mismatch"
        else:
            row.status = InvoicePush.Status.PUSHED
            row.last_error = ""
            action = "qbo_pushed"
        row.save()
        InvoiceEvent.objects.create(invoice=invoice, action=action, detail=detail)
    return row
