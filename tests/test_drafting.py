"""Drafting, approval and voiding on the real database (billing semantics 6, 7 and 8)."""

import datetime as dt
import threading
import time
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, connection, transaction

from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.drafting import Period, draft_invoices
from invoices.models import Classification, Flag, Invoice, InvoiceEntry, InvoiceEvent, InvoiceLine
from invoices.review import correct_entry
from tests import billing_fixtures as make
from timesheets.models import TimeEntry

OCTOBER = Period.month("2026-10")
pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    make.firm()
    dev = make.category("development")
    internal = make.category("internal-meeting", billable=False)
    acme = make.client("Acme")
    p = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    make.rule(internal, notes_regex=r"(?i)standup")
    return {"client": acme, "project": p, "ana": ana, "dev": dev}


@pytest.fixture
def approver(db):
    user = User.objects.create_user("approver", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["approve_invoice", "void_invoice", "change_invoice", "view_invoice"]
        )
    )
    return User.objects.get(pk=user.pk)  # fresh: permission cache


@pytest.fixture
def ops(db):
    user = User.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_invoice"]))
    return User.objects.get(pk=user.pk)


def test_draft_prices_entries_and_leaves_other_months_out(setup):
    make.entry(setup["project"], setup["ana"], minutes=90)
    make.entry(setup["project"], setup["ana"], minutes=30, notes="Standup", task="Internal")
    make.entry(setup["project"], setup["ana"], day=dt.date(2026, 9, 30))
    summary = draft_invoices(period=OCTOBER)
    [invoice] = summary.invoices
    assert (invoice.subtotal, invoice.total, invoice.currency) == (D("300.00"), D("300.00"), "USD")
    assert invoice.issue_date == dt.date(2026, 10, 31)
    assert invoice.due_date == dt.date(2026, 11, 30)
    assert InvoiceEntry.objects.filter(invoice=invoice).count() == 1  # standup: no line, hidden


def test_s8_drafting_twice_rebuilds_the_same_draft(setup):
    e = make.entry(setup["project"], setup["ana"], minutes=60)
    first = draft_invoices(period=OCTOBER).invoices[0]
    make.entry(setup["project"], setup["ana"], minutes=30)
    second = draft_invoices(period=OCTOBER)
    assert [inv.pk for inv in second.invoices] == [first.pk]
    assert (second.created, second.rebuilt) == (0, 1)
    assert Invoice.objects.count() == 1
    assert Invoice.objects.get().total == D("300.00")
    assert InvoiceEntry.objects.filter(entry=e).count() == 1
    again = draft_invoices(period=OCTOBER)
    assert Invoice.objects.get().total == D("300.00") and again.invoices[0].pk == first.pk


def test_s6_pending_entry_blocks_approval_and_correction_rebuilds(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    vague = make.entry(setup["project"], setup["ana"], minutes=30, notes="misc", task="Other")
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    link = InvoiceEntry.objects.get(entry=vague)
    assert (link.state, link.line_id) == ("pending", None)
    assert link.pending_reason.startswith("no category: no rule or approved history matched")
    assert Flag.PENDING in invoice.flags
    with pytest.raises(InvalidTransition, match="1 entry pending review"):
        approve_invoice(invoice=invoice, user=approver)

    rebuilt = correct_entry(entry=vague, user=approver, category=setup["dev"])
    assert rebuilt.pk == invoice.pk
    assert rebuilt.total == D("300.00") and Flag.PENDING not in rebuilt.flags
    assert Classification.objects.get(entry=vague).tier == "manual"
    approve_invoice(invoice=rebuilt, user=approver)
    assert Invoice.objects.get().status == "approved"


def test_s8_approval_needs_the_permission(setup, ops):
    make.entry(setup["project"], setup["ana"])
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    with pytest.raises(InvalidTransition, match="invoices.approve_invoice"):
        approve_invoice(invoice=invoice, user=ops)
    assert Invoice.objects.get().status == "draft"


def test_s8_approved_invoice_is_frozen(setup, approver):
    e = make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    approve_invoice(invoice=invoice, user=approver)
    lines_before = list(InvoiceLine.objects.values_list("id", "amount"))
    e.refresh_from_db()
    assert e.locked
    make.rate("999.00", client=setup["client"])  # a rule change after approval
    make.entry(setup["project"], setup["ana"], minutes=60)  # a late entry
    summary = draft_invoices(period=OCTOBER)
    assert (summary.frozen, summary.invoices) == (1, [])
    assert list(InvoiceLine.objects.values_list("id", "amount")) == lines_before
    assert Invoice.objects.get().total == D("200.00")
    with pytest.raises(InvalidTransition, match="approved and cannot be made approved"):
        approve_invoice(invoice=invoice, user=approver)


def test_s8_source_change_after_approval_flags_invoice(setup, approver):
    e = make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    approve_invoice(invoice=invoice, user=approver)
    # What an import records for a frozen entry; the flag commits with it (a trigger).
    TimeEntry.objects.filter(pk=e.pk).update(pending_source_change={"deleted": True})
    invoice.refresh_from_db()
    assert Flag.SOURCE_CHANGED in invoice.flags and invoice.total == D("200.00")
    assert InvoiceEvent.objects.filter(invoice=invoice, action="flagged source_changed").exists()


def test_s8_changed_entry_marks_draft_stale_until_rebuilt(setup, approver):
    e = make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    # An edit at the source, as an import writes it: the stale mark commits with it.
    TimeEntry.objects.filter(pk=e.pk).update(duration_seconds=5 * 3600, content_hash="edited")
    invoice.refresh_from_db()
    with pytest.raises(InvalidTransition, match="rebuild it first"):
        approve_invoice(invoice=invoice, user=approver)
    draft_invoices(period=OCTOBER)
    invoice.refresh_from_db()
    assert Flag.STALE not in invoice.flags
    approve_invoice(invoice=invoice, user=approver)


def test_s8_voiding_releases_entries_for_the_next_draft(setup, approver):
    e = make.entry(setup["project"], setup["ana"], minutes=60)
    first = draft_invoices(period=OCTOBER).invoices[0]
    approve_invoice(invoice=first, user=approver)
    void_invoice(invoice=first, user=approver, reason="wrong rate")
    e.refresh_from_db()
    assert not e.locked
    second = draft_invoices(period=OCTOBER).invoices[0]
    assert second.pk != first.pk
    assert list(
        InvoiceEntry.objects.filter(entry=e, is_live=True).values_list("invoice", flat=True)
    ) == [second.pk]
    assert InvoiceEntry.objects.filter(entry=e).count() == 2  # the void invoice keeps its history
    assert (
        InvoiceEvent.objects.filter(invoice=first, action="void").get().detail["reason"]
        == "wrong rate"
    )


def test_s2_3_memory_from_approved_entries(setup, approver):
    done = make.entry(setup["project"], setup["ana"], notes="Sync w/ client", task="Other")
    draft_invoices(period=OCTOBER)
    invoice = correct_entry(entry=done, user=approver, category=setup["dev"])
    approve_invoice(invoice=invoice, user=approver)
    later = make.entry(
        setup["project"],
        setup["ana"],
        notes="sync W/ CLIENT!",
        task="Other",
        day=dt.date(2026, 11, 3),
    )
    draft_invoices(period=Period.month("2026-11"))
    c = Classification.objects.get(entry=later)
    assert (c.tier, c.category_id, c.needs_review) == ("memory", setup["dev"].id, False)


def test_invoice_per_project(setup):
    from invoices.models import ClientPolicy

    ClientPolicy.objects.filter(client=setup["client"]).update(invoice_per_project=True)
    other = make.project(setup["client"], "ACME-2")
    make.entry(setup["project"], setup["ana"])
    make.entry(other, setup["ana"])
    invoices = draft_invoices(period=OCTOBER).invoices
    assert sorted(inv.project.code for inv in invoices) == ["ACME", "ACME-2"]
    assert draft_invoices(period=OCTOBER).created == 0


def test_s8_database_refuses_an_entry_on_two_live_invoices(setup):
    e = make.entry(setup["project"], setup["ana"])
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    other = Invoice.objects.create(
        client=setup["client"],
        period_start=dt.date(2026, 10, 15),
        period_end=dt.date(2026, 11, 15),
        currency="USD",
        issue_date=dt.date(2026, 11, 15),
        due_date=dt.date(2026, 12, 15),
        drafted_at=invoice.drafted_at,
    )
    with pytest.raises(IntegrityError, match="entry_on_one_live_invoice"), transaction.atomic():
        InvoiceEntry.objects.create(invoice=other, entry=e, state="pending", raw_seconds=3600)


def test_s8_database_refuses_a_second_live_invoice_for_a_period(setup):
    make.entry(setup["project"], setup["ana"])
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    with (
        pytest.raises(IntegrityError, match="one_live_invoice_per_client_period"),
        transaction.atomic(),
    ):
        Invoice.objects.create(
            client=setup["client"],
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            currency="USD",
            issue_date=invoice.issue_date,
            due_date=invoice.due_date,
            drafted_at=invoice.drafted_at,
        )


@pytest.mark.django_db(transaction=True)
def test_s8_concurrent_drafts_cannot_double_bill(setup):
    """Two drafting runs at once for overlapping periods of one client: every entry ends on
    exactly one live invoice (the client row lock serializes them; the unique index would
    refuse a double placement anyway)."""
    for day in range(1, 29):
        make.entry(setup["project"], setup["ana"], day=dt.date(2026, 10, day))
    periods = [OCTOBER, Period(dt.date(2026, 10, 15), dt.date(2026, 11, 14))]
    barrier = threading.Barrier(2)
    errors = []

    def run(period):
        try:
            barrier.wait()
            draft_invoices(period=period)
        except Exception as exc:  # noqa: BLE001 - the test reports any failure of a thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(p,)) for p in periods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    live = InvoiceEntry.objects.filter(is_live=True)
    assert live.count() == 28
    assert live.values("entry").distinct().count() == 28
    for invoice in Invoice.objects.all():
        assert invoice.total == sum(line.amount for line in invoice.lines.all())


@pytest.mark.django_db(transaction=True)
def test_s8_approval_during_a_rebuild_is_never_undone(setup, approver):
    """An approval that commits while a rebuild of the same draft runs: the rebuild waits for
    the invoice lock, then sees an approved invoice and leaves it alone."""
    for day in range(1, 29):
        make.entry(setup["project"], setup["ana"], day=dt.date(2026, 10, day))
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    locked = threading.Event()
    errors = []

    def approve_slowly():
        try:
            with transaction.atomic():
                Invoice.objects.select_for_update().get(pk=invoice.pk)
                locked.set()
                approve_invoice(invoice=invoice, user=approver)
                time.sleep(0.5)  # the rebuild starts meanwhile and must wait
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=approve_slowly)
    thread.start()
    locked.wait(5)
    summary = draft_invoices(period=OCTOBER)
    thread.join()
    assert errors == []
    invoice.refresh_from_db()
    assert invoice.status == "approved"
    assert (summary.frozen, summary.invoices) == (1, [])
    assert InvoiceEntry.objects.filter(invoice=invoice, is_live=True).count() == 28
