"""django-q2 tasks for QuickBooks: thin, taking ids, safe to run twice (delivery is at least
once). The work and its guarantees live in `invoices.quickbooks`."""

from __future__ import annotations

import logging

from integrations.quickbooks import QuickBooksReconnectRequired
from invoices import quickbooks

logger = logging.getLogger(__name__)


def push_invoice_task(push_id: int) -> str:
    try:
        return quickbooks.push(push_id=push_id).status
    except quickbooks.PushBusy as exc:
        # The row stays queued; the stalled-push sweep enqueues it again.
        logger.warning("push %s postponed: %s", push_id, exc)
        return "busy"


def void_in_quickbooks_task(push_id: int, user_id: int | None = None) -> str:
    # Failures are recorded on the invoice by the service (the admin offers the button again).
    return quickbooks.void_pushed_invoice(push_id=push_id, user_id=user_id).qbo_status


def refresh_statuses_task() -> str:
    try:
        return str(quickbooks.refresh_statuses())
    except (quickbooks.NotConnected, QuickBooksReconnectRequired) as exc:
        # Nothing to do until someone (re)connects; the admin banner already says so.
        return f"skipped: {exc}"


def resume_stalled_pushes_task() -> int:
    return quickbooks.resume_stalled_pushes()
