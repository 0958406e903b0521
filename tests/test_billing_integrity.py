"""Billing integrity across months (issue 10): what is approved is exactly what the entries say,
nothing slips, nothing bills twice. Billing semantics sections 2, 8 and 10, on the real
PostgreSQL. Each test here failed on the code before its fix."""

import csv
import datetime as dt
import io
from contextlib import contextmanager
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, connection, transaction

from invoices import review
from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.classification import classify_entries, entries_to_classify
from invoices.drafting import DraftingError, Period, draft_invoices
from invoices.models import (
    Classification,
    Firm,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceLine,
    InvoicePush,
)
from invoices.review import correct_entry
from tests import billing_fixtures as make
from timesheets.importing.service import import_file
from timesheets.models import TimeEntry
from timesheets.signals import entries_imported

OCTOBER = Period.month("2026-10")
NOVEMBER = Period.month("2026-11")
pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    make.firm()
    dev = make.category("development")
    internal = make.category("internal-meeting", billable=False)
    acme = make.client("Acme")
    project = make.project(acme, "ACME", name="Acme retainer")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    return {"client": acme, "project": project, "ana": ana, "dev": dev, "internal": internal}


@pytest.fixture
def approver(db):
    user = User.objects.create_user("approver", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["approve_invoice", "void_invoice", "change_invoice", "view_invoice"]
        )
    )
    return User.objects.get(pk=user.pk)


def harvest_csv(*rows):
    """A Harvest "Detailed time" export of (date, hours, notes) rows for Ana on ACME."""
    header = ["Date", "Client", "Project", "Project Code", "Task", "Notes", "Hours"]
    header += ["Billable?", "First Name", "Last Name"]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for day, hours, notes in rows:
        writer.writerow(
            [day, "Acme", "Acme retainer", "ACME", "Dev", notes, hours, "Yes", "Ana", "Pereira"]
        )
    return buffer.getvalue().encode()


@contextmanager
def after_commit_work_lost():
    """What a crash, a worker timeout or a month-end queue backlog leaves: the import commits,
    and nothing that was to run after its commit ever runs."""
    receivers, entries_imported.receivers = entries_imported.receivers, []
    entries_imported.sender_receivers_cache.clear()
    try:
        yield
    finally:
        entries_imported.receivers = receivers
        entries_imported.sender_receivers_cache.clear()


# --- Defect 1: stale drafts approved (section 8) ----------------------------------------------


def test_s8_reimported_edit_makes_the_draft_unapprovable_in_its_own_transaction(setup, approver):
    import_file(name="oct.csv", content=harvest_csv(("2026-10-05", "1.00", "motion")))
    draft = draft_invoices(period=OCTOBER).invoices[0]
    assert draft.total == D("200.00")
    with after_commit_work_lost():
        import_file(name="oct.csv", content=harvest_csv(("2026-10-05", "5.00", "motion")))
    draft.refresh_from_db()
    assert Flag.STALE in draft.flags
    with pytest.raises(InvalidTransition, match="rebuild it first"):
        approve_invoice(invoice=draft, user=approver)
    [rebuilt] = draft_invoices(period=OCTOBER).invoices
    assert rebuilt.pk == draft.pk and rebuilt.total == D("1000.00")
    approve_invoice(invoice=rebuilt, user=approver)


def test_s8_approval_rechecks_every_entry_under_lock_even_without_the_stale_mark(setup, approver):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    TimeEntry.objects.filter(pk=entry.pk).update(duration_seconds=5 * 3600, content_hash="new")
    # Whatever removed the mark (a bug, a hand-edited row), approval compares the entries.
    Invoice.objects.filter(pk=draft.pk).update(flags=[])
    with pytest.raises(InvalidTransition, match=r"1 entry .* changed since it was drafted"):
        approve_invoice(invoice=draft, user=approver)
    assert Invoice.objects.get(pk=draft.pk).status == "draft"


def test_s8_an_entry_deleted_at_the_source_blocks_approval(setup, approver):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    TimeEntry.objects.filter(pk=entry.pk).update(deleted_at=dt.datetime.now(dt.UTC))
    Invoice.objects.filter(pk=draft.pk).update(flags=[])
    with pytest.raises(InvalidTransition, match="deleted at the source"):
        approve_invoice(invoice=draft, user=approver)


def test_s8_a_new_entry_in_a_drafted_period_marks_the_draft_stale(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    make.entry(setup["project"], setup["ana"], minutes=30, day=dt.date(2026, 10, 20))
    draft.refresh_from_db()
    assert Flag.STALE in draft.flags
    assert InvoiceEvent.objects.filter(invoice=draft, action="flagged stale").exists()


# --- Defect 2: approving figures the reviewer never saw ---------------------------------------


def test_s8_approval_compares_what_the_reviewer_saw_under_the_lock(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    seen_at, seen_total = draft.drafted_at.isoformat(), draft.total
    make.entry(setup["project"], setup["ana"], minutes=30)
    draft_invoices(period=OCTOBER)  # a rebuild commits while the reviewer reads
    with pytest.raises(InvalidTransition, match="rebuilt after you opened it"):
        approve_invoice(invoice=draft, user=approver, seen_drafted_at=seen_at)
    with pytest.raises(InvalidTransition, match=r"total now 300.00"):
        approve_invoice(invoice=draft, user=approver, seen_total=seen_total)
    draft.refresh_from_db()
    approved = approve_invoice(
        invoice=draft, user=approver, seen_drafted_at=draft.drafted_at.isoformat()
    )
    assert approved.total == D("300.00")


# --- Defect 3 (the part in approval): no void while a push is under way -----------------------


@pytest.mark.parametrize("status", ["queued", "pushing"])
def test_s8_void_is_refused_while_a_push_is_under_way(setup, approver, status):
    make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)
    InvoicePush.objects.create(invoice=invoice, request_id=f"r-{invoice.pk}", status=status)
    with pytest.raises(InvalidTransition, match="being sent to QuickBooks"):
        void_invoice(invoice=invoice, user=approver)
    assert Invoice.objects.get(pk=invoice.pk).status == "approved"


# --- Defect 4: late time (section 10.1) -------------------------------------------------------


def test_s10_1_late_time_goes_on_the_next_draft_flagged_with_its_period(setup, approver):
    from invoices.unbilled import unbilled_entries

    make.entry(setup["project"], setup["ana"], minutes=60)
    october = approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)
    late = make.entry(setup["project"], setup["ana"], minutes=90, day=dt.date(2026, 10, 28))
    classify_entries(entries_to_classify(entry_ids=[late.pk]))  # as its import does
    assert [e.pk for e in unbilled_entries()] == [late.pk]
    assert "late time from 2026-10" in unbilled_entries()[0].unbilled_reason
    make.entry(setup["project"], setup["ana"], minutes=30, day=dt.date(2026, 11, 3))
    [november] = draft_invoices(period=NOVEMBER).invoices
    assert november.total == D("400.00") and Flag.LATE_TIME in november.flags
    link = InvoiceEntry.objects.get(entry=late)
    assert (link.invoice_id, link.late_from) == (november.pk, dt.date(2026, 10, 1))
    assert link.line.first_date == dt.date(2026, 10, 28)
    assert link.line.derivation["late_time_from"] == ["2026-10"]
    assert list(unbilled_entries()) == []
    assert Invoice.objects.get(pk=october.pk).total == D("200.00")


# --- Defect 5: the tracker's own state (section 10.2) -----------------------------------------


def test_s10_2_invoiced_in_the_tracker_is_held_until_released(setup, approver):
    from invoices.unbilled import unbilled_entries

    make.entry(setup["project"], setup["ana"], minutes=60)
    billed_there = make.entry(setup["project"], setup["ana"], minutes=120)
    TimeEntry.objects.filter(pk=billed_there.pk).update(tracker_invoiced=True)
    [draft] = draft_invoices(period=OCTOBER).invoices
    link = InvoiceEntry.objects.get(entry=billed_there)
    assert (link.state, link.pending_reason) == ("held", "invoiced in Other CSV")
    assert draft.total == D("200.00") and Flag.HELD in draft.flags
    approved = approve_invoice(invoice=draft, user=approver)  # held never blocks
    assert not InvoiceEntry.objects.filter(entry=billed_there).exists()
    assert [e.unbilled_reason for e in unbilled_entries()] == ["held: invoiced in Other CSV"]
    assert approved.total == D("200.00")

    review.release_hold(entry=billed_there, user=approver)
    [november] = draft_invoices(period=NOVEMBER).invoices
    assert november.total == D("400.00")
    assert InvoiceEntry.objects.get(entry=billed_there).late_from == dt.date(2026, 10, 1)


def test_s10_2_bill_approved_only_holds_what_the_tracker_has_not_approved(setup, approver):
    setup["client"].policy.bill_approved_only = True
    setup["client"].policy.save()
    approved_there = make.entry(setup["project"], setup["ana"], minutes=60)
    waiting = make.entry(setup["project"], setup["ana"], minutes=60)
    unknown = make.entry(setup["project"], setup["ana"], minutes=60)
    TimeEntry.objects.filter(pk=approved_there.pk).update(tracker_approved=True)
    TimeEntry.objects.filter(pk=waiting.pk).update(tracker_approved=False)
    [draft] = draft_invoices(period=OCTOBER).invoices
    states = dict(InvoiceEntry.objects.values_list("entry_id", "pending_reason"))
    assert states == {
        approved_there.pk: "",
        waiting.pk: "not approved in Other CSV",
        unknown.pk: "",
    }
    assert draft.total == D("400.00")


# --- Defect 6: voiding applies the source changes recorded while frozen (section 8) ----------


def test_s8_void_applies_a_deletion_recorded_while_frozen(setup, approver):
    kept = make.entry(setup["project"], setup["ana"], minutes=60)
    gone = make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)
    # What the sync records for a frozen entry the tracker no longer lists.
    TimeEntry.objects.filter(pk=gone.pk).update(pending_source_change={"deleted": True})
    void_invoice(invoice=invoice, user=approver, reason="wrong rate")
    gone = TimeEntry.all_objects.get(pk=gone.pk)
    assert gone.deleted_at is not None and gone.pending_source_change is None
    [redraft] = draft_invoices(period=OCTOBER).invoices
    assert list(redraft.entry_links.values_list("entry_id", flat=True)) == [kept.pk]
    assert redraft.total == D("200.00")


def test_s8_void_applies_an_edit_recorded_while_frozen(setup, approver):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)
    recorded = {
        "person_id": setup["ana"].pk,
        "client_id": setup["client"].pk,
        "project_id": setup["project"].pk,
        "task": "Dev",
        "date": "2026-10-06",
        "start_time": None,
        "duration_seconds": 2 * 3600,
        "notes": "motion, revised",
        "tracker_billable": True,
        "content_hash": "edited-at-source",
    }
    TimeEntry.objects.filter(pk=entry.pk).update(pending_source_change=recorded)
    assert Flag.SOURCE_CHANGED in Invoice.objects.get(pk=invoice.pk).flags
    void_invoice(invoice=invoice, user=approver)
    entry.refresh_from_db()
    assert (entry.duration_seconds, entry.date, entry.notes, entry.content_hash) == (
        7200,
        dt.date(2026, 10, 6),
        "motion, revised",
        "edited-at-source",
    )
    assert entry.pending_source_change is None and not entry.locked
    assert draft_invoices(period=OCTOBER).invoices[0].total == D("400.00")


# --- Defect 8: invoice numbers without gaps (section 10.3) ------------------------------------


def test_s10_3_numbers_are_given_at_approval_gapless_in_the_firms_template(setup, approver):
    other = make.client("Globex")
    globex = make.project(other, "GLX")
    make.entry(setup["project"], setup["ana"], minutes=60)
    make.entry(globex, setup["ana"], minutes=60)
    acme_draft, globex_draft = sorted(
        draft_invoices(period=OCTOBER).invoices, key=lambda inv: inv.client.name
    )
    assert (acme_draft.number, acme_draft.label) == (None, f"draft #{acme_draft.pk}")
    # A deleted draft (its entries moved away) uses no number.
    scratch = make.client("Initech")
    scratch_entry = make.entry(make.project(scratch, "INI"), setup["ana"], minutes=60)
    [scratch_draft] = draft_invoices(period=OCTOBER, client_ids=[scratch.pk]).invoices
    TimeEntry.objects.filter(pk=scratch_entry.pk).update(date=dt.date(2026, 9, 1))
    assert draft_invoices(period=OCTOBER, client_ids=[scratch.pk]).removed == 1
    assert not Invoice.objects.filter(pk=scratch_draft.pk).exists()

    assert approve_invoice(invoice=globex_draft, user=approver).number == "INV-2026-0001"
    voided = void_invoice(invoice=Invoice.objects.get(pk=globex_draft.pk), user=approver)
    assert voided.number == "INV-2026-0001"  # a void keeps its number
    firm = Firm.load()
    firm.invoice_number_template = "NW/{year}/{seq:03}"
    firm.save()
    assert approve_invoice(invoice=acme_draft, user=approver).number == "NW/2026/002"


def test_s10_3_a_rolled_back_approval_gives_its_number_back(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    with pytest.raises(RuntimeError), transaction.atomic():
        approve_invoice(invoice=draft, user=approver)
        raise RuntimeError("the request failed after approving")
    draft.refresh_from_db()
    assert draft.number is None
    assert approve_invoice(invoice=draft, user=approver).number == "INV-2026-0001"


# --- Defect 9: a correction commits with the stale mark of its draft ---------------------------


def test_s8_a_correction_whose_rebuild_fails_leaves_its_draft_unapprovable(
    setup, approver, monkeypatch
):
    entry = make.entry(setup["project"], setup["ana"], minutes=60, notes="team standup")
    draft = draft_invoices(period=OCTOBER).invoices[0]
    assert draft.total == D("200.00")

    def rebuild_fails(invoice, *, user=None):
        raise DraftingError("the worker was killed while rebuilding")

    # The crash is injected into our own rebuild step; the database is the real one.
    monkeypatch.setattr(review, "rebuild_invoice", rebuild_fails)
    with pytest.raises(DraftingError):
        correct_entry(entry=entry, user=approver, category=setup["internal"])
    assert Classification.objects.get(entry=entry).billable is False  # the correction stands
    draft.refresh_from_db()
    assert Flag.STALE in draft.flags and draft.total == D("200.00")
    with pytest.raises(InvalidTransition, match="rebuild it first"):
        approve_invoice(invoice=draft, user=approver)


# --- The database guards a frozen invoice, whatever writes to it ------------------------------


@pytest.fixture
def approved(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    return approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)


def test_s8_an_approved_line_cannot_be_changed_by_orm_update(approved):
    with pytest.raises(IntegrityError, match="its lines cannot change"), transaction.atomic():
        InvoiceLine.objects.filter(invoice=approved).update(amount=D("9999.00"))
    assert InvoiceLine.objects.get(invoice=approved).amount == D("200.00")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE invoices_invoiceline SET amount = 9999 WHERE invoice_id = %s",
        "DELETE FROM invoices_invoiceline WHERE invoice_id = %s",
        "DELETE FROM invoices_invoiceentry WHERE invoice_id = %s",
        "UPDATE invoices_invoiceentry SET billed_seconds = 1 WHERE invoice_id = %s",
        "UPDATE invoices_invoiceentry SET is_live = false WHERE invoice_id = %s AND false",
        "UPDATE invoices_invoice SET total = 9999, subtotal = 9999 WHERE id = %s",
        "UPDATE invoices_invoice SET number = 'INV-X' WHERE id = %s",
        "UPDATE invoices_invoice SET status = 'draft' WHERE id = %s",
        "DELETE FROM invoices_invoice WHERE id = %s",
    ],
)
def test_s8_raw_sql_cannot_change_an_approved_invoice(approved, sql):
    before = (approved.total, list(InvoiceLine.objects.values_list("amount", flat=True)))
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [approved.pk])
    except IntegrityError as exc:
        assert "invoice INV-2026-0001 is approved" in str(exc)
    else:
        # The one statement above that changes nothing (`AND false`) is allowed.
        assert sql.endswith("AND false")
    approved.refresh_from_db()
    assert (approved.total, list(InvoiceLine.objects.values_list("amount", flat=True))) == before


def test_s8_a_locked_entry_keeps_what_was_billed(approved):
    with pytest.raises(IntegrityError, match="is on an approved invoice"), transaction.atomic():
        TimeEntry.objects.update(duration_seconds=5 * 3600)
    assert TimeEntry.objects.get().duration_seconds == 3600


def test_s8_flags_of_an_approved_invoice_may_still_be_added(approved):
    Invoice.objects.filter(pk=approved.pk).update(flags=[Flag.QBO_MISMATCH])
    assert Invoice.objects.get(pk=approved.pk).flags == [Flag.QBO_MISMATCH]


# --- What prices a draft changed: a rate, a policy, a cap ---------------------------------------


def test_s8_a_rate_change_marks_drafts_stale_and_an_unchanged_save_does_not(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    setup["client"].policy.save()  # saved as it was: nothing changes
    draft.refresh_from_db()
    assert Flag.STALE not in draft.flags
    partner = make.Rate.objects.get(role="Partner")
    partner.rate = D("210.00")
    partner.save()
    draft.refresh_from_db()
    assert Flag.STALE in draft.flags
    with pytest.raises(InvalidTransition, match="rebuild it first"):
        approve_invoice(invoice=draft, user=approver)
    assert draft_invoices(period=OCTOBER).invoices[0].total == D("210.00")


def test_s8_a_reviewer_cannot_decide_an_entry_deleted_at_the_source(setup, approver):
    # Found by the month-end simulation: the correction crashed with DoesNotExist.
    entry = make.entry(setup["project"], setup["ana"], minutes=60, notes="misc", task="Misc")
    draft_invoices(period=OCTOBER)
    TimeEntry.objects.filter(pk=entry.pk).update(deleted_at=dt.datetime.now(dt.UTC))
    with pytest.raises(review.CorrectionRefused, match="deleted at the source"):
        correct_entry(entry=entry, user=approver, category=setup["dev"])


def test_s10_1_drafting_classifies_late_time_it_may_take(setup, approver):
    make.entry(setup["project"], setup["ana"], minutes=60)
    approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)
    # Imported, and the classification after its commit never ran.
    late = make.entry(setup["project"], setup["ana"], minutes=90, day=dt.date(2026, 10, 28))
    [november] = draft_invoices(period=NOVEMBER).invoices
    link = InvoiceEntry.objects.get(entry=late)
    assert (link.invoice_id, link.state, november.total) == (november.pk, "billed", D("300.00"))
