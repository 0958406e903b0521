"""A reviewer's adjustments of what the month bills (billing semantics 10.4, issue 16), on the
real PostgreSQL: write-downs and write-ups of an entry's hours, manual lines (fixed fee,
expense, credit), their stale marks, what approval freezes, the realization figure, the JSON
export and the admin. Each test here failed on the code before the feature."""

import csv
import datetime as dt
import io
import json
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, transaction
from django.urls import reverse

from invoices.adjustments import (
    AdjustmentRefused,
    add_manual_line,
    adjust_entry,
    clear_adjustment,
    remove_manual_line,
)
from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.drafting import Period, draft_invoices
from invoices.exporting import export_period
from invoices.models import (
    EntryAdjustment,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceStatus,
    ManualLine,
)
from invoices.overview import month_overview
from invoices.realization import realization_by_client
from tests import billing_fixtures as make
from timesheets.importing.service import import_file
from timesheets.models import TimeEntry

OCTOBER = Period.month("2026-10")
NOVEMBER = Period.month("2026-11")
pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    make.firm()
    dev = make.category("development")
    acme = make.client("Acme")
    project = make.project(acme, "ACME", name="Acme retainer")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    return {"client": acme, "project": project, "ana": ana, "dev": dev}


def staff(username, *codenames, first_name=""):
    user = User.objects.create_user(username, password="pw", is_staff=True, first_name=first_name)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def reviewer(db):
    return staff(
        "rita",
        "view_invoice",
        "change_invoice",
        "change_classification",
        "view_entryadjustment",
        "view_manualline",
        first_name="Rita",
    )


@pytest.fixture
def approver(db):
    return staff("approver", "approve_invoice", "void_invoice", "change_invoice", "view_invoice")


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


def the_draft() -> Invoice:
    return Invoice.objects.get(status=InvoiceStatus.DRAFT, period_start=OCTOBER.start)


def link_of(entry) -> InvoiceEntry:
    return InvoiceEntry.objects.select_related("line").get(entry=entry, is_live=True)


# --- Write-down / write-up ----------------------------------------------------------------------


def test_a_write_down_bills_its_hours_and_survives_rebuilds_and_re_imports(setup, reviewer):
    october = harvest_csv(("2026-10-05", "2.00", "motion"), ("2026-10-06", "1.00", "research"))
    import_file(name="oct.csv", content=october)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    assert draft.total == D("600.00")
    motion = TimeEntry.objects.get(notes="motion")

    rebuilt = adjust_entry(
        entry=motion, user=reviewer, billed_hours=D("1.25"), reason="first motion of its kind"
    )
    assert (rebuilt.pk, rebuilt.total, rebuilt.flags) == (draft.pk, D("450.00"), [])
    line = link_of(motion).line
    assert (line.quantity, line.amount) == (D("1.2500"), D("250.00"))
    assert line.derivation["adjustment"]["standard_amount"] == "400.00"
    assert line.derivation["adjustment"]["amount"] == "-150.00"
    assert line.derivation["adjustment"]["entries"][0]["by"] == "Rita"
    assert InvoiceEvent.objects.filter(invoice=draft, action="entry adjusted").count() == 1

    draft_invoices(period=OCTOBER)
    import_file(name="oct.csv", content=october)  # the same export again
    [again] = draft_invoices(period=OCTOBER).invoices
    assert (again.pk, again.total) == (draft.pk, D("450.00"))
    assert link_of(motion).billed_seconds == 4500
    assert EntryAdjustment.objects.get(entry=motion).reason == "first motion of its kind"


def test_hours_changed_at_the_source_after_a_write_down_wait_for_review_then_reconfirm(
    setup, reviewer, approver
):
    import_file(name="oct.csv", content=harvest_csv(("2026-10-05", "2.00", "motion")))
    draft_invoices(period=OCTOBER)
    motion = TimeEntry.objects.get()
    adjust_entry(entry=motion, user=reviewer, billed_hours=D("1"), reason="agreed with client")

    import_file(name="oct.csv", content=harvest_csv(("2026-10-05", "3.00", "motion")))
    [draft] = draft_invoices(period=OCTOBER).invoices
    link = link_of(motion)
    assert (link.state, link.pending_reason) == (
        "pending",
        "hours changed at the source after a write-down (was 2 h, now 3 h)",
    )
    assert EntryAdjustment.objects.get(entry=motion).billed_seconds == 3600  # kept
    with pytest.raises(InvalidTransition, match="pending review"):
        approve_invoice(invoice=draft, user=approver)

    motion.refresh_from_db()
    rebuilt = adjust_entry(
        entry=motion, user=reviewer, billed_hours=D("1"), reason="agreed with client"
    )
    assert EntryAdjustment.objects.get(entry=motion).source_seconds == 3 * 3600
    assert (link_of(motion).state, rebuilt.total) == ("billed", D("200.00"))
    assert approve_invoice(invoice=rebuilt, user=approver).total == D("200.00")


def test_clearing_an_adjustment_bills_the_standard_hours_again(setup, reviewer):
    entry = make.entry(setup["project"], setup["ana"], minutes=90)
    draft_invoices(period=OCTOBER)
    adjust_entry(entry=entry, user=reviewer, billed_hours=D("0"), reason="written off")
    assert the_draft().total == D("0.00")
    assert clear_adjustment(entry=entry, user=reviewer).total == D("300.00")
    assert not EntryAdjustment.objects.exists()
    with pytest.raises(AdjustmentRefused, match="no write-down or write-up to clear"):
        clear_adjustment(entry=entry, user=reviewer)


@pytest.mark.parametrize(
    "hours, reason, message",
    [
        (D("1"), "  ", "needs a reason"),
        (D("-0.5"), "typo", "cannot be negative"),
        (D("24.01"), "typo", "cannot exceed 24 h"),
        (D("NaN"), "typo", "not a number"),
        (1.5, "typo", "not a float"),
    ],
)
def test_bad_adjustments_are_refused_and_change_nothing(setup, reviewer, hours, reason, message):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    with pytest.raises(AdjustmentRefused, match=message):
        adjust_entry(entry=entry, user=reviewer, billed_hours=hours, reason=reason)
    assert not EntryAdjustment.objects.exists()
    assert Invoice.objects.get(pk=draft.pk).flags == []


def test_a_locked_entry_cannot_be_adjusted(setup, reviewer, approver):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    invoice = approve_invoice(invoice=draft_invoices(period=OCTOBER).invoices[0], user=approver)
    with pytest.raises(AdjustmentRefused, match=f"billed on {invoice.number}.*void the invoice"):
        adjust_entry(entry=entry, user=reviewer, billed_hours=D("0.5"), reason="too late")
    # Whatever path writes: the database refuses it too.
    with pytest.raises(IntegrityError, match="its billed hours cannot be adjusted"):
        with transaction.atomic():
            EntryAdjustment.objects.create(
                entry=entry, billed_seconds=1800, source_seconds=3600, reason="sql"
            )
    assert not EntryAdjustment.objects.exists()


def test_an_adjustment_commits_with_its_drafts_stale_mark(setup, approver):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    other = make.client("Other")
    make.entry(make.project(other, "OTH"), setup["ana"], minutes=60)
    draft, other_draft = sorted(draft_invoices(period=OCTOBER).invoices, key=lambda i: i.pk)
    # Any path (the admin, a script, SQL), and nothing run after the commit: the draft is
    # stale in the same transaction, and approval refuses it.
    with transaction.atomic():
        EntryAdjustment.objects.create(
            entry=entry, billed_seconds=1800, source_seconds=3600, reason="by hand"
        )
        assert Flag.STALE in Invoice.objects.get(pk=draft.pk).flags
    assert Invoice.objects.get(pk=other_draft.pk).flags == []
    with pytest.raises(InvalidTransition, match="rebuild it first"):
        approve_invoice(invoice=draft, user=approver)
    assert InvoiceEvent.objects.filter(
        invoice=draft, action="flagged stale", detail__reason="an entry's billed hours changed"
    ).exists()


# --- Manual lines -------------------------------------------------------------------------------


def fee(setup, user, **kw):
    values = dict(
        client=setup["client"],
        period=OCTOBER,
        user=user,
        kind="fixed_fee",
        description="Monthly retainer",
        quantity=D("1"),
        unit_price=D("500.00"),
        reason="retainer agreed in the engagement letter",
    )
    values.update(kw)
    return add_manual_line(**values)


def test_manual_lines_are_on_the_draft_after_time_and_survive_rebuilds(setup, reviewer):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft_invoices(period=OCTOBER)
    fee(setup, reviewer, category=setup["dev"])
    fee(
        setup,
        reviewer,
        kind="expense",
        description="Court fees",
        quantity=D("2"),
        unit_price=D("45.50"),
        reason="paid on the client's behalf",
    )
    rebuilt = fee(
        setup,
        reviewer,
        kind="credit",
        description="Goodwill",
        unit_price=D("-91.00"),
        reason="the September delay",
    )
    [draft] = draft_invoices(period=OCTOBER).invoices
    assert draft.pk == rebuilt.pk
    lines = list(draft.lines.order_by("position"))
    assert [(ln.kind, ln.description, ln.quantity, ln.amount) for ln in lines][1:] == [
        ("fixed_fee", "Monthly retainer", D("1.0000"), D("500.00")),
        ("expense", "Court fees", D("2.0000"), D("91.00")),
        ("credit", "Goodwill", D("1.0000"), D("-91.00")),
    ]
    assert (lines[0].kind, lines[0].amount) == ("time", D("200.00"))
    assert (draft.subtotal, draft.total) == (D("700.00"), D("700.00"))
    assert lines[1].category_id == setup["dev"].pk
    assert lines[3].derivation["note"] == "manual line: credit, by Rita, the September delay"


def test_a_draft_with_only_manual_lines_is_still_a_draft(setup, reviewer):
    draft = fee(setup, reviewer)
    assert (draft.status, draft.total, draft.entry_links.count()) == ("draft", D("500.00"), 0)
    [again] = draft_invoices(period=OCTOBER).invoices
    assert again.pk == draft.pk
    [line] = ManualLine.objects.all()
    assert remove_manual_line(line=line, user=reviewer) is None
    assert not Invoice.objects.exists()


def test_a_manual_line_is_frozen_with_the_approved_invoice_and_released_by_a_void(
    setup, reviewer, approver, admin_client
):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft_invoices(period=OCTOBER)
    draft = fee(setup, reviewer)
    [line] = ManualLine.objects.all()
    invoice = approve_invoice(invoice=draft, user=approver)
    line.refresh_from_db()
    assert line.invoice_id == invoice.pk
    with pytest.raises(AdjustmentRefused, match=f"billed on {invoice.number}, which is approved"):
        remove_manual_line(line=line, user=reviewer)
    with pytest.raises(IntegrityError, match="cannot change"):
        with transaction.atomic():
            ManualLine.objects.filter(pk=line.pk).update(unit_price=D("1.00"))
    with pytest.raises(AdjustmentRefused, match="is approved; add the fixed fee to a later"):
        fee(setup, reviewer, description="Another")
    assert ManualLine.objects.get().unit_price == D("500.00")
    html = admin_client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    html = html.content.decode()
    assert "retainer agreed in the engagement letter" in html
    assert 'id="add-manual-line"' not in html and "Set hours" not in html
    # Drafting again bills it nowhere else.
    assert draft_invoices(period=OCTOBER).invoices == []

    void_invoice(invoice=invoice, user=approver, reason="wrong rate")
    [successor] = draft_invoices(period=OCTOBER).invoices
    assert successor.total == D("700.00")
    assert approve_invoice(invoice=successor, user=approver).pk == successor.pk
    assert ManualLine.objects.get().invoice_id == successor.pk


def test_a_manual_line_marks_its_period_draft_stale_and_approval_marks_no_other(
    setup, reviewer, approver
):
    make.entry(setup["project"], setup["ana"], minutes=60)
    make.entry(setup["project"], setup["ana"], minutes=60, day=dt.date(2026, 11, 2))
    october = draft_invoices(period=OCTOBER).invoices[0]
    november = draft_invoices(period=NOVEMBER).invoices[0]
    with transaction.atomic():
        line = ManualLine.objects.create(
            client=setup["client"],
            period_start=OCTOBER.start,
            period_end=OCTOBER.end,
            kind="expense",
            description="Taxi",
            unit_price=D("30.00"),
            reason="by hand",
        )
        assert Flag.STALE in Invoice.objects.get(pk=october.pk).flags
    assert Invoice.objects.get(pk=november.pk).flags == []
    [october] = draft_invoices(period=OCTOBER).invoices
    approve_invoice(invoice=october, user=approver)
    assert ManualLine.objects.get(pk=line.pk).invoice_id == october.pk
    assert Invoice.objects.get(pk=november.pk).flags == []


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kind": "gift"}, "unknown kind of manual line 'gift'"),
        ({"description": " "}, "needs a description"),
        ({"reason": ""}, "needs a reason"),
        ({"quantity": D("0")}, "must be above 0"),
        ({"quantity": D("1.00001")}, "more than 4 decimals"),
        ({"unit_price": D("-5.00")}, "cannot have a negative unit price"),
        ({"unit_price": D("5.001")}, "more than 2 decimals"),
        ({"kind": "credit", "unit_price": D("50.00")}, "did you mean -50.00"),
        ({"kind": "credit", "unit_price": D("-900.00")}, "the total cannot be negative"),
    ],
)
def test_bad_manual_lines_are_refused_and_change_nothing(setup, reviewer, changes, message):
    make.entry(setup["project"], setup["ana"], minutes=60)
    draft = draft_invoices(period=OCTOBER).invoices[0]
    with pytest.raises(AdjustmentRefused, match=message):
        fee(setup, reviewer, **changes)
    assert not ManualLine.objects.exists()
    assert Invoice.objects.get(pk=draft.pk).flags == []


def test_a_client_invoiced_per_project_needs_the_project(setup, reviewer):
    from invoices.models import ClientPolicy

    ClientPolicy.objects.filter(client=setup["client"]).update(invoice_per_project=True)
    make.entry(setup["project"], setup["ana"], minutes=60)
    with pytest.raises(AdjustmentRefused, match="invoiced per project: choose the project"):
        fee(setup, reviewer)
    draft = fee(setup, reviewer, project=setup["project"])
    assert (draft.project_id, draft.total) == (setup["project"].pk, D("700.00"))


# --- Realization, export ------------------------------------------------------------------------


def test_realization_per_client_is_billed_over_standard_value(setup, reviewer, admin_client):
    first = make.entry(setup["project"], setup["ana"], minutes=120)
    make.entry(setup["project"], setup["ana"], minutes=60)
    other = make.client("Other")
    make.entry(make.project(other, "OTH"), setup["ana"], minutes=60)
    draft_invoices(period=OCTOBER)
    adjust_entry(entry=first, user=reviewer, billed_hours=D("1.5"), reason="learning curve")
    fee(setup, reviewer)  # manual lines are not time: they do not move realization
    # Acme: billed 1.5 h + 1 h = 500.00 of a standard 3 h = 600.00 -> 83.3 %
    assert realization_by_client(period=OCTOBER) == {
        setup["client"].pk: D("83.3"),
        other.pk: D("100.0"),
    }
    rows = {row.name: row.realization for row in month_overview(period=OCTOBER).clients}
    assert rows == {"Acme": D("83.3"), "Other": D("100.0")}
    page = admin_client.get(reverse("admin:invoices_invoice_month") + "?month=2026-10")
    assert '<td class="num realization" rowspan="1">83.3 %</td>' in page.content.decode()


def test_the_json_export_lists_manual_lines_and_adjustments(setup, reviewer):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    draft_invoices(period=OCTOBER)
    adjust_entry(entry=entry, user=reviewer, billed_hours=D("0.5"), reason="goodwill")
    fee(
        setup,
        reviewer,
        kind="expense",
        description="Filing",
        unit_price=D("25.00"),
        billing_code="E112",
        reason="paid for the client",
    )
    [invoice] = export_period(period=OCTOBER)["invoices"]
    time_line, expense = invoice["lines"]
    assert "manual" not in time_line  # each field is only on the lines it concerns
    assert time_line["adjustment"] == {
        "standard_quantity": "1.0000",
        "standard_amount": "200.00",
        "amount": "-100.00",
        "by": ["Rita"],
        "reasons": ["goodwill"],
    }
    assert expense == {
        "kind": "expense",
        "description": "Filing",
        "category": None,
        "code": "E112",
        "quantity": "1.0000",
        "unit_price": "25.00",
        "amount": "25.00",
        "entries": [],
        "manual": {"by": "Rita", "reason": "paid for the client"},
    }
    assert invoice["subtotal"] == invoice["total"] == "125.00"
    json.dumps(invoice)  # plain JSON


# --- Admin --------------------------------------------------------------------------------------


def test_admin_writes_an_entry_down_and_adds_and_removes_a_manual_line(setup, reviewer, client):
    entry = make.entry(setup["project"], setup["ana"], minutes=60, notes="drafted the motion")
    draft = draft_invoices(period=OCTOBER).invoices[0]
    client.force_login(reviewer)
    page = reverse("admin:invoices_invoice_change", args=[draft.pk])

    response = client.post(
        reverse("admin:invoices_invoice_adjust_entry", args=[draft.pk, entry.pk]),
        {"billed_hours": "0.75", "reason": ""},
    )
    assert response.status_code == 302 and not EntryAdjustment.objects.exists()
    response = client.post(
        reverse("admin:invoices_invoice_adjust_entry", args=[draft.pk, entry.pk]),
        {"billed_hours": "0.75", "reason": "research overlap"},
    )
    assert response.status_code == 302
    assert EntryAdjustment.objects.get(entry=entry).billed_seconds == 2700

    response = client.post(
        reverse("admin:invoices_invoice_add_manual_line", args=[draft.pk]),
        {
            "kind": "expense",
            "description": "Courier",
            "quantity": "1",
            "unit_price": "40.00",
            "category": "",
            "billing_code": "",
            "reason": "sent the originals",
        },
    )
    assert response.status_code == 302
    assert Invoice.objects.get(pk=draft.pk).total == D("190.00")

    html = client.get(page).content.decode()
    assert "Adjustments and manual lines" in html
    assert "research overlap" in html and "sent the originals" in html
    assert "Rita" in html

    line = ManualLine.objects.get()
    response = client.post(
        reverse("admin:invoices_invoice_remove_manual_line", args=[draft.pk, line.pk])
    )
    assert response.status_code == 302 and not ManualLine.objects.exists()
    assert Invoice.objects.get(pk=draft.pk).total == D("150.00")


def test_admin_lists_adjustments_and_manual_lines_read_only(setup, reviewer, client):
    entry = make.entry(setup["project"], setup["ana"], minutes=60)
    draft_invoices(period=OCTOBER)
    adjust_entry(entry=entry, user=reviewer, billed_hours=D("0.5"), reason="goodwill")
    fee(setup, reviewer)
    client.force_login(reviewer)
    adjustments = client.get(reverse("admin:invoices_entryadjustment_changelist"))
    lines = client.get(reverse("admin:invoices_manualline_changelist") + "?kind=fixed_fee")
    assert adjustments.status_code == lines.status_code == 200
    assert "goodwill" in adjustments.content.decode()
    assert "Monthly retainer" in lines.content.decode()
    assert client.get(reverse("admin:invoices_manualline_add")).status_code == 403
