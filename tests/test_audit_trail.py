"""The trigger-based audit trail sees changes made by bulk writes, including the sync's."""

from decimal import Decimal as D

import pghistory
import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from invoices.drafting import Period, draft_invoices
from invoices.models import Invoice, InvoiceLine, InvoicePush
from invoices.review import correct_entry
from tests import billing_fixtures as make
from timesheets.models import Client, Project, TimeEntry

pytestmark = pytest.mark.django_db


def test_a_deletion_at_the_source_is_recorded_in_the_entry_history():
    acme = make.client("Acme")
    entry = make.entry(make.project(acme, "ACME"), make.person("Ana Pereira", "Partner"))
    gone = timezone.now()
    TimeEntry.all_objects.filter(pk=entry.pk).update(deleted_at=gone, source_updated_at=gone)

    history = apps.get_model("invoices", "TimeEntryHistory")
    versions = list(history.objects.filter(pgh_obj_id=entry.pk).order_by("pgh_id"))
    assert [v.pgh_label for v in versions] == ["insert", "update"]
    assert (versions[0].deleted_at, versions[1].deleted_at) == (None, gone)
    assert versions[1].source_updated_at == gone


# --- Lines, entry links, pushes, people, projects, clients (issues 10 and 14) ---------------
# Each event model is looked up by name inside the test: before these tables were tracked the
# lookup fails, and each test fails on its own.

AUDIT_TRAIL = "admin:invoices_auditrecord_changelist"


def history(name):
    return apps.get_model("invoices", name)


def who_and_when(event):
    return event.pgh_context.metadata.get("user"), event.pgh_created_at


@pytest.fixture
def month():
    """Acme, October: a 90-minute entry the rules price at 200/h (300.00) and one vague note
    no tier decides (pending), drafted."""
    make.firm()
    dev = make.category("development")
    acme = make.client("Acme")
    project = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    motion = make.entry(project, ana, minutes=90, notes="Drafted the motion")
    vague = make.entry(project, ana, minutes=30, notes="misc", task="Other")
    invoice = draft_invoices(period=Period.month("2026-10")).invoices[0]
    return {
        "invoice": invoice,
        "motion": motion,
        "vague": vague,
        "dev": dev,
        "client": acme,
        "project": project,
        "ana": ana,
    }


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "a-long-test-password")


def trail(client, **params):
    """The admin's Audit trail page, as HTML."""
    response = client.get(reverse(AUDIT_TRAIL), params)
    assert response.status_code == 200
    return response.content.decode()


def test_drafting_records_every_line_and_entry_link(month):
    lines, links = history("InvoiceLineHistory"), history("InvoiceEntryHistory")
    invoice = month["invoice"]
    assert set(
        lines.objects.filter(pgh_label="insert").values_list("pgh_obj_id", flat=True)
    ) == set(invoice.lines.values_list("id", flat=True))
    recorded = links.objects.filter(pgh_label="insert").values_list("entry_id", "state")
    assert set(recorded) == {(month["motion"].pk, "billed"), (month["vague"].pk, "pending")}


def test_a_rebuild_from_the_review_page_records_lines_and_links_with_who_and_when(
    client, month, root
):
    lines, links = history("InvoiceLineHistory"), history("InvoiceEntryHistory")
    before = {model: model.objects.count() for model in (lines, links)}
    client.force_login(root)
    url = reverse("admin:invoices_invoice_resolve", args=[month["invoice"].pk, month["vague"].pk])
    client.post(url, {"category": month["dev"].pk})
    # The rebuild replaced the line and both links: the old ones deleted, the new inserted.
    for model in (lines, links):
        changes = model.objects.order_by("pgh_id")[before[model] :]
        assert {e.pgh_label for e in changes} == {"delete", "insert"}
        for event in changes:
            user, at = who_and_when(event)
            assert user == root.pk and at is not None
            assert event.pgh_context.metadata["url"] == url
    page = trail(client, model="invoices.invoiceline")
    assert "root" in page and "Drafted the motion" in page


def test_an_orm_update_of_a_draft_line_is_recorded_with_actor_and_time(client, month, root):
    lines = history("InvoiceLineHistory")
    line = month["invoice"].lines.get()
    with pghistory.context(user=root.pk, url="manage.py shell"):
        InvoiceLine.objects.filter(pk=line.pk).update(amount=D("9999.00"))
    [update] = lines.objects.filter(pgh_obj_id=line.pk, pgh_label="update")
    assert update.amount == D("9999.00")
    assert who_and_when(update)[0] == root.pk
    client.force_login(root)
    page = trail(client, model="invoices.invoiceline", q=line.pk)
    assert "amount: 300.0 -&gt; 9999.0" in page
    assert "root" in page and "manage.py shell" in page
    # One invoice's whole record, lines included, from its review page's link.
    page = trail(client, invoice=month["invoice"].pk)
    assert "amount: 300.0 -&gt; 9999.0" in page and f"InvoiceLine #{line.pk}" in page
    wrong = client.get(reverse(AUDIT_TRAIL), {"invoice": "INV-1"})
    assert wrong.status_code == 302 and wrong.url.endswith("?e=1")


def test_voiding_is_recorded_on_every_entry_link(client, month, root):
    links = history("InvoiceEntryHistory")
    correct_entry(entry=month["vague"], user=root, category=month["dev"])
    invoice = Invoice.objects.get()
    client.force_login(root)
    client.post(reverse("admin:invoices_invoice_approve", args=[invoice.pk]))
    client.post(reverse("admin:invoices_invoice_void", args=[invoice.pk]), {"reason": "dup"})
    released = links.objects.filter(pgh_label="update", is_live=False)
    assert set(released.values_list("entry_id", flat=True)) == {
        month["motion"].pk,
        month["vague"].pk,
    }
    assert {who_and_when(e)[0] for e in released} == {root.pk}
    page = trail(client, model="invoices.invoiceentry")
    assert "is_live: true -&gt; false" in page and "root" in page


def test_pushes_are_recorded_with_actor_and_time(client, month, root):
    pushes = history("InvoicePushHistory")
    with pghistory.context(user=root.pk, url="/push"):
        push = InvoicePush.objects.create(
            invoice=month["invoice"], request_id="billables-test-1", requested_by=root
        )
        InvoicePush.objects.filter(pk=push.pk).update(status="pushed", doc_number="INV-1")
    assert [e.pgh_label for e in pushes.objects.filter(pgh_obj=push).order_by("pgh_id")] == [
        "insert",
        "update",
    ]
    client.force_login(root)
    page = trail(client)  # pushes are in the default view
    assert "status: &quot;queued&quot; -&gt; &quot;pushed&quot;" in page or (
        "status: queued -&gt; pushed" in page
    )
    assert f"InvoicePush #{push.pk}" in page and "root" in page


def test_people_projects_and_clients_are_recorded_with_actor_and_time(client, month, root):
    client.force_login(root)
    ana = month["ana"]
    response = client.post(
        reverse("admin:timesheets_person_change", args=[ana.pk]),
        {"email": ana.email, "name": ana.name, "role": "Associate"},
    )
    assert response.status_code == 302
    Project.objects.filter(pk=month["project"].pk).update(billing="non_billable")
    Client.objects.filter(pk=month["client"].pk).update(name="Acme Corp")

    [role] = history("PersonHistory").objects.filter(pgh_obj_id=ana.pk, pgh_label="update")
    assert role.role == "Associate" and who_and_when(role)[0] == root.pk
    assert history("ProjectHistory").objects.get(pgh_label="update").billing == "non_billable"
    assert history("ClientHistory").objects.get(pgh_label="update").name == "Acme Corp"
    page = trail(client)
    assert "role: Partner -&gt; Associate" in page and f"Person #{ana.pk}" in page
    assert "billing: hourly -&gt; non_billable" in page
    assert "name: Acme -&gt; Acme Corp" in page
    assert "root" in page


def test_every_new_table_can_be_chosen_on_the_audit_trail(client, month, root):
    client.force_login(root)
    response = client.get(reverse(AUDIT_TRAIL))
    choices = {label for label, _ in response.context["cl"].filter_specs[0].lookup_choices}
    assert {
        "invoices.invoiceline",
        "invoices.invoiceentry",
        "invoices.invoicepush",
        "invoices.trackedperson",
        "invoices.trackedproject",
        "invoices.trackedclient",
    } <= choices
    for model in ("invoiceline", "invoiceentry"):
        rows = client.get(reverse(AUDIT_TRAIL), {"model": f"invoices.{model}"}).context["cl"]
        assert rows.result_list, model


def test_lines_and_links_are_recorded_once_per_statement():
    """A rebuild deletes and inserts a big draft's lines and links in bulk: the history
    triggers must run per statement (the row bit of `tgtype` clear), not once per row."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, t.tgtype & 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             WHERE c.relname IN ('invoices_invoiceline', 'invoices_invoiceentry')
               AND t.tgname ~ '^pgtrigger_(insert_insert|update_update|delete_delete)_'
            """
        )
        rows = cursor.fetchall()
    assert (
        sorted(table for table, _ in rows)
        == ["invoices_invoiceentry"] * 3 + ["invoices_invoiceline"] * 3
    )
    assert {row_bit for _, row_bit in rows} == {0}


def test_the_number_given_at_approval_and_write_downs_are_in_the_trail(db):
    import datetime as dt
    from decimal import Decimal

    from django.contrib.auth.models import User

    from invoices.adjustments import adjust_entry
    from invoices.approval import approve_invoice
    from invoices.drafting import Period, draft_invoices
    from invoices.history import HISTORY_MODEL_NAMES
    from tests import billing_fixtures as make

    assert {"EntryAdjustmentHistory", "ManualLineHistory"} <= set(HISTORY_MODEL_NAMES)
    make.firm()
    make.rule(make.category("development"), task="Dev")
    project = make.project(make.client("Acme"), "ACME")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    entry = make.entry(project, ana, minutes=60, day=dt.date(2026, 10, 5))
    boss = User.objects.create_superuser("boss", "b@example.com", "x")
    draft_invoices(period=Period.month("2026-10"))
    adjust_entry(entry=entry, user=boss, billed_hours=Decimal("0.5"), reason="learning time")
    [invoice] = draft_invoices(period=Period.month("2026-10")).invoices
    approve_invoice(invoice=invoice, user=boss)
    assert invoice.history.filter(number="INV-2026-0001").exists()
    assert entry.adjustment.history.filter(reason="learning time").exists()
