"""Void vs QuickBooks (issue 10, defect 3): no second open QuickBooks invoice for the same
hours, voiding in QuickBooks from the void itself, and a retry after an unknown outcome that
asks QuickBooks by number before it creates anything.

Real HTTP to the local fake (tests/fakes/quickbooks_server.py) and the real PostgreSQL. The
fixtures are tests/test_quickbooks.py's, imported: pytest finds them by name, so ruff's
"redefined" warning for every test argument is noise here."""
# ruff: noqa: F811

import json
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from integrations import quickbooks as qbo
from invoices import quickbooks as service
from invoices.approval import approve_invoice, void_invoice
from invoices.drafting import draft_invoices
from invoices.models import Invoice, InvoiceEntry, InvoiceEvent, InvoicePush, InvoiceStatus
from invoices.tasks_quickbooks import void_in_quickbooks_task
from tests.fakes.quickbooks_server import quickbooks_fake  # noqa: F401
from tests.test_quickbooks import (  # noqa: F401  (fixtures)
    OCTOBER,
    approved,
    fake,
    mapped,
    month,
    push_now,
    pusher,
    queue,
    user_with,
)

D0 = D("0.00")

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


# --- 1. No second open QuickBooks invoice for the same hours --------------------------------


def pushed(approved, pusher) -> InvoicePush:
    return push_now(queue(approved["invoice"], pusher))


def redraft_and_approve(pusher) -> Invoice:
    """After a void here: the month is drafted again (the same entries) and approved."""
    redraft = draft_invoices(period=OCTOBER).invoices[0]
    return approve_invoice(invoice=redraft, user=pusher)


def open_quickbooks_invoices_per_entry(fake) -> dict[int, int]:
    """For every entry ever on a pushed invoice of ours: how many QuickBooks invoices that
    are open there (not voided) bill it."""
    still_open = fake.open_invoices()
    per_entry: dict[int, int] = {}
    for row in InvoicePush.objects.exclude(qbo_invoice_id=""):
        entry_ids = InvoiceEntry.objects.filter(
            invoice_id=row.invoice_id, state=InvoiceEntry.State.BILLED
        ).values_list("entry_id", flat=True)
        for entry_id in entry_ids:
            per_entry.setdefault(entry_id, 0)
            per_entry[entry_id] += row.qbo_invoice_id in still_open
    return per_entry


def test_void_redraft_approve_push_makes_one_open_quickbooks_invoice_per_entry(
    approved, fake, pusher
):
    first = pushed(approved, pusher)
    void_invoice(invoice=approved["invoice"], user=pusher, reason="wrong rate")
    second = redraft_and_approve(pusher)
    assert second.number == "INV-2026-0002"

    with pytest.raises(service.PushRefused) as refused:
        queue(second, pusher)
    assert str(refused.value) == (
        "INV-2026-0002 is not sent to QuickBooks: 2 of its entries are still billed on "
        f"QuickBooks invoice INV-2026-0001 (id {first.qbo_invoice_id}, draft there) of "
        "INV-2026-0001, which is void here. Sending it would leave two open QuickBooks "
        'invoices for the same hours. Void the earlier one in QuickBooks first (the button "Void '
        'in QuickBooks" on the page of INV-2026-0001, or in QuickBooks itself and then read the '
        "statuses back), or send this one anyway with a reason (override)."
    )
    assert InvoicePush.objects.filter(invoice=second).count() == 0 and len(fake.invoices) == 1

    # Voiding it in QuickBooks (the service, then its task) lets the new invoice go.
    service.void_in_quickbooks(invoice=approved["invoice"], user=pusher)
    service.void_pushed_invoice(push_id=first.pk, user_id=pusher.pk)
    new = push_now(queue(second, pusher))
    assert new.status == "pushed" and len(fake.invoices) == 2
    assert list(fake.open_invoices()) == [new.qbo_invoice_id]
    per_entry = open_quickbooks_invoices_per_entry(fake)
    assert len(per_entry) == 2 and set(per_entry.values()) == {1}


def test_a_void_read_back_from_quickbooks_also_lets_the_redraft_go(approved, fake, pusher):
    """Voided in QuickBooks by hand: once the status read-back has seen it, the push is free."""
    first = pushed(approved, pusher)
    void_invoice(invoice=approved["invoice"], user=pusher)
    second = redraft_and_approve(pusher)
    fake.void_invoice(first.qbo_invoice_id)
    with pytest.raises(service.PushRefused, match="still billed on QuickBooks invoice"):
        queue(second, pusher)  # not read back yet: as far as we know it is open
    service.refresh_statuses()
    assert push_now(queue(second, pusher)).status == "pushed"
    assert set(open_quickbooks_invoices_per_entry(fake).values()) == {1}


def test_an_override_needs_a_reason_and_is_audited(approved, fake, pusher):
    first = pushed(approved, pusher)
    void_invoice(invoice=approved["invoice"], user=pusher)
    second = redraft_and_approve(pusher)
    with pytest.raises(service.PushRefused, match="still billed on QuickBooks invoice"):
        service.request_push(invoice=second, user=pusher, override_reason="   ")
    assert InvoicePush.objects.filter(invoice=second).count() == 0

    reason = "The client keeps INV-2026-0001 open by agreement until the credit note is issued"
    row = service.request_push(invoice=second, user=pusher, override_reason=reason)
    assert row.status == "queued"
    event = InvoiceEvent.objects.get(invoice=second, action="qbo_push_override")
    assert (event.actor, event.detail["reason"], event.detail["request_id"]) == (
        pusher,
        reason,
        row.request_id,
    )
    assert event.detail["earlier"] == [
        {
            "invoice_id": approved["invoice"].pk,
            "label": "INV-2026-0001",
            "doc_number": "INV-2026-0001",
            "qbo_invoice_id": first.qbo_invoice_id,
            "qbo_status": "draft",
            "shared_entries": 2,
        }
    ]
    assert InvoiceEvent.objects.get(invoice=second, action="qbo_push_requested").detail["override"]


def test_hours_only_on_an_earlier_draft_or_an_unpushed_invoice_do_not_block(approved, fake, pusher):
    void_invoice(invoice=approved["invoice"], user=pusher)  # never sent to QuickBooks
    second = redraft_and_approve(pusher)
    assert push_now(queue(second, pusher)).status == "pushed"
    assert InvoiceEvent.objects.filter(action="qbo_push_override").count() == 0


def test_the_admin_shows_the_refusal_and_sends_anyway_with_a_reason(approved, fake, pusher, client):
    pushed(approved, pusher)
    void_invoice(invoice=approved["invoice"], user=pusher)
    second = redraft_and_approve(pusher)
    client.force_login(pusher)
    page = reverse("admin:invoices_invoice_change", args=[second.pk])
    html = client.get(page).content.decode()
    assert "Not sent to QuickBooks while its hours are still on an open QuickBooks invoice" in html
    assert "Send anyway (override)" in html and 'name="override_reason"' in html

    override = reverse("admin:invoices_invoice_qbo_send_override", args=[second.pk])
    html = client.post(override, {"override_reason": " "}, follow=True).content.decode()
    assert "Sending anyway needs a reason" in html
    assert InvoicePush.objects.filter(invoice=second).count() == 0

    html = client.post(
        override, {"override_reason": "re-issued on the client's request"}, follow=True
    ).content.decode()
    assert "queued for QuickBooks, overriding the earlier open QuickBooks invoice" in html
    event = InvoiceEvent.objects.get(invoice=second, action="qbo_push_override")
    assert (event.actor, event.detail["reason"]) == (pusher, "re-issued on the client's request")


# --- 2. Voiding in QuickBooks -----------------------------------------------------------------


def test_void_in_quickbooks_voids_it_there_once_and_a_second_run_sends_nothing(
    approved, fake, pusher
):
    row = pushed(approved, pusher)
    fake.mark_sent(row.qbo_invoice_id)  # changed there since we stored its SyncToken
    void_invoice(invoice=approved["invoice"], user=pusher)
    service.void_in_quickbooks(invoice=approved["invoice"], user=pusher)
    assert fake.invoice_voids() == []  # enqueued on commit, not run in the request

    row = service.void_pushed_invoice(push_id=row.pk, user_id=pusher.pk)
    remote = fake.invoices[row.qbo_invoice_id]
    assert (remote["TotalAmt"], remote["Balance"], remote["SyncToken"]) == (D0, D0, "2")
    assert remote["PrivateNote"].startswith("Voided")
    assert [line["Amount"] for line in remote["Line"]] == [D0] * len(remote["Line"])
    assert (row.qbo_status, row.sync_token) == ("voided", "2")
    assert len(fake.invoice_voids()) == 1
    voided = InvoiceEvent.objects.get(action="qbo_voided")
    assert (voided.actor, voided.detail["status"], voided.detail["already"]) == (
        pusher,
        {"before": "draft", "after": "voided"},
        False,
    )
    requested = InvoiceEvent.objects.get(action="qbo_void_requested")
    assert (requested.actor, requested.detail["doc_number"]) == (pusher, "INV-2026-0001")

    before = len(fake.api_requests())
    service.void_pushed_invoice(push_id=row.pk, user_id=pusher.pk)  # delivered again
    assert len(fake.api_requests()) == before
    assert InvoiceEvent.objects.filter(action="qbo_voided").count() == 1
    # QuickBooks keeps the voided invoice under its number, at zero.
    found = service.with_api(lambda api: api.find_invoices_by_number("INV-2026-0001"))
    assert [(r.status, r.total_amount) for r in found] == [("voided", D0)]


def test_a_lost_void_answer_is_read_back_as_voided_and_not_voided_twice(approved, fake, pusher):
    row = pushed(approved, pusher)
    void_invoice(invoice=approved["invoice"], user=pusher)
    service.void_in_quickbooks(invoice=approved["invoice"], user=pusher)
    fake.switches.drop_void_responses = 1  # voided there, the answer never arrives
    row = service.void_pushed_invoice(push_id=row.pk)
    assert row.qbo_status == "voided" and len(fake.invoice_voids()) == 1
    assert InvoiceEvent.objects.get(action="qbo_voided").detail["already"] is True


def test_the_fake_refuses_a_stale_sync_token_with_quickbooks_fault(approved, fake, pusher):
    row = pushed(approved, pusher)
    fake.mark_sent(row.qbo_invoice_id)
    with pytest.raises(qbo.QuickBooksValidationError) as stale:
        service.with_api(lambda api: api.void_invoice(row.qbo_invoice_id, sync_token="0"))
    assert (stale.value.code, stale.value.status) == ("5010", 400)
    assert stale.value.message.startswith(
        "the record changed in QuickBooks since it was read: Stale Object Error : You and"
    )
    assert not fake.invoices[row.qbo_invoice_id]["PrivateNote"].startswith("Voided")
    body = fake.invoice_voids()[0]
    assert json.loads(body.body) == {"Id": row.qbo_invoice_id, "SyncToken": "0"}


def test_a_paid_invoice_is_not_voided_and_the_reason_is_shown(approved, fake, pusher, client):
    row = pushed(approved, pusher)
    fake.pay(row.qbo_invoice_id, D("100.00"))
    void_invoice(invoice=approved["invoice"], user=pusher)
    service.void_in_quickbooks(invoice=approved["invoice"], user=pusher)
    row = service.void_pushed_invoice(push_id=row.pk)
    assert fake.invoice_voids() == [] and row.qbo_status == "partial"
    failed = InvoiceEvent.objects.get(action="qbo_void_failed")
    assert failed.detail["error"] == (
        "QuickBooks invoice INV-2026-0001 has a payment applied (partial there) and QuickBooks "
        "does not void it: remove the payment in QuickBooks, then void it there"
    )
    client.force_login(pusher)
    html = client.get(
        reverse("admin:invoices_invoice_change", args=[row.invoice_id])
    ).content.decode()
    assert "Voiding it there failed: QuickBooks invoice INV-2026-0001 has a payment" in html
    # QuickBooks itself refuses it too (the fake enforces what the service checks first).
    with pytest.raises(qbo.QuickBooksValidationError, match="payments applied"):
        service.with_api(lambda api: api.void_invoice(row.qbo_invoice_id, sync_token="1"))


def test_void_in_quickbooks_is_refused_with_reasons(approved, fake, pusher):
    with pytest.raises(service.PushRefused, match="is approved here; void it here first"):
        service.void_in_quickbooks(invoice=approved["invoice"], user=pusher)
    void_invoice(invoice=approved["invoice"], user=pusher)
    with pytest.raises(service.PushRefused, match="was never sent to QuickBooks"):
        service.void_in_quickbooks(invoice=approved["invoice"], user=pusher)
    clerk = user_with("clerk", "view_invoice", "add_invoicepush")
    with pytest.raises(service.PushRefused, match=r"permission to void invoices"):
        service.void_in_quickbooks(invoice=approved["invoice"], user=clerk)
    assert InvoiceEvent.objects.filter(action="qbo_void_requested").count() == 0


def test_the_void_form_also_voids_it_in_quickbooks(
    approved, fake, pusher, client, django_capture_on_commit_callbacks
):
    row = pushed(approved, pusher)
    client.force_login(pusher)
    page = reverse("admin:invoices_invoice_change", args=[row.invoice_id])
    html = client.get(page).content.decode()
    assert (
        '<input type="checkbox" name="void_in_quickbooks" value="1" checked> Also void it in '
        "QuickBooks (invoice INV-2026-0001)"
    ) in html
    void_url = reverse("admin:invoices_invoice_void", args=[row.invoice_id])
    with django_capture_on_commit_callbacks(execute=True):
        html = client.post(
            void_url, {"reason": "wrong client", "void_in_quickbooks": "1"}, follow=True
        ).content.decode()
    assert "INV-2026-0001 voided; its entries are free for the next draft." in html
    assert "QuickBooks invoice INV-2026-0001 will be voided in QuickBooks" in html
    task = OrmQ.objects.get().task
    assert (task["func"], task["args"]) == (service.VOID_TASK, (row.pk, pusher.pk))
    assert "Voiding it there was asked for on" in html
    assert void_in_quickbooks_task(*task["args"]) == "voided"
    assert Invoice.objects.get(pk=row.invoice_id).status == InvoiceStatus.VOID
    assert not fake.open_invoices()


def test_voiding_without_the_box_leaves_quickbooks_and_offers_a_button_later(
    approved, fake, pusher, client
):
    row = pushed(approved, pusher)
    client.force_login(pusher)
    void_url = reverse("admin:invoices_invoice_void", args=[row.invoice_id])
    client.post(void_url, {"reason": "wrong client"})  # the box unticked: not sent
    assert Invoice.objects.get(pk=row.invoice_id).status == InvoiceStatus.VOID
    assert InvoiceEvent.objects.filter(action="qbo_void_requested").count() == 0
    page = reverse("admin:invoices_invoice_change", args=[row.invoice_id])
    html = client.get(page).content.decode()
    assert "Void here, but QuickBooks invoice INV-2026-0001 is still open there (draft)." in html
    assert "Void in QuickBooks (invoice INV-2026-0001)" in html
    client.post(reverse("admin:invoices_invoice_qbo_void", args=[row.invoice_id]))
    assert InvoiceEvent.objects.get(action="qbo_void_requested").actor == pusher
    service.void_pushed_invoice(push_id=row.pk)
    html = client.get(page).content.decode()
    assert "is still open there" not in html and "Void in QuickBooks" not in html


def test_approve_and_send_of_a_redraft_is_refused_and_leaves_the_draft_a_draft(
    approved, fake, pusher
):
    pushed(approved, pusher)
    void_invoice(invoice=approved["invoice"], user=pusher)
    redraft = draft_invoices(period=OCTOBER).invoices[0]
    with pytest.raises(service.PushRefused) as refused:
        service.approve_and_push(invoice=redraft, user=pusher)
    assert str(refused.value).startswith(
        f"draft #{redraft.pk} is not sent to QuickBooks: 2 of its entries are still billed"
    )
    redraft.refresh_from_db()
    assert (redraft.status, redraft.number) == ("draft", None)
    assert InvoicePush.objects.filter(invoice=redraft).count() == 0
