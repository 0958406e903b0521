"""Void vs QuickBooks (issue 10, defect 3): no second open QuickBooks invoice for the same
hours, voiding in QuickBooks from the void itself, and a retry after an unknown outcome that
asks QuickBooks by number before it creates anything.

Real HTTP to the local fake (tests/fakes/quickbooks_server.py) and the real PostgreSQL. The
fixtures are tests/test_quickbooks.py's, imported: pytest finds them by name, so ruff's
"redefined" warning for every test argument is noise here."""
# ruff: noqa: F811

from invoices import quickbooks as service
from invoices.models import InvoiceEvent, InvoicePush
from tests.fakes.quickbooks_server import quickbooks_fake  # noqa: F401
from tests.test_quickbooks import (  # noqa: F401  (fixtures)
    approved,
    fake,
    mapped,
    month,
    push_now,
    pusher,
    queue,
)

# --- 3. A retry after an unknown outcome asks QuickBooks by number first --------------------


def test_a_lost_answer_and_a_forgotten_request_id_make_no_second_invoice_in_the_same_run(
    approved, fake, pusher
):
    fake.switches.drop_invoice_responses = 1  # created, then the connection is closed
    fake.switches.forget_dropped_request_ids = True  # and QuickBooks no longer knows the id
    row = push_now(queue(approved["invoice"], pusher))
    assert [c.status for c in fake.invoice_creates()] == [-1]  # the retry created nothing
    assert len(fake.invoices) == 1
    assert (row.status, row.qbo_invoice_id) == ("pushed", next(iter(fake.invoices)))
    queries = [r.body for r in fake.api_requests("POST", "/query")]
    assert any(approved["invoice"].number in q and "DocNumber" in q for q in queries)
    assert InvoiceEvent.objects.get(action="qbo_pushed").detail["reconciled"] is True


def test_a_retry_in_a_later_run_after_a_lost_answer_asks_by_number(
    approved, fake, pusher, settings
):
    """The run that lost the answer ends (one try per run here); QuickBooks then forgets the
    request id a few minutes later; the sweep's run must not create."""
    settings.QBO_PUSH_MAX_TRIES = 1
    fake.switches.drop_invoice_responses = 1
    row = push_now(queue(approved["invoice"], pusher))
    assert (row.status, row.attempts, len(fake.invoices)) == ("queued", 1, 1)
    fake.forget_request_ids()
    row = push_now(row)  # the stalled-push sweep delivers it again
    assert len(fake.invoices) == 1 and len(fake.invoice_creates()) == 1
    assert (row.status, row.qbo_invoice_id) == ("pushed", next(iter(fake.invoices)))


def test_a_killed_worker_left_pushing_is_reconciled_even_when_recent(approved, fake, pusher):
    row = queue(approved["invoice"], pusher)
    payload = service.invoice_input(invoice=approved["invoice"], push=row)
    service.with_api(lambda api: api.create_invoice(payload, request_id=row.request_id))
    fake.forget_request_ids()
    InvoicePush.objects.filter(pk=row.pk).update(status="pushing", attempts=1)
    row = push_now(row)
    assert len(fake.invoices) == 1 and len(fake.invoice_creates()) == 1
    assert row.status == "pushed"


def test_a_first_try_does_not_ask_by_number(approved, fake, pusher):
    push_now(queue(approved["invoice"], pusher))
    assert fake.api_requests("POST", "/query") == []
