"""The invoice review pages of the admin, through Django's test client on the real database."""

from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from invoices.drafting import Period, draft_invoices
from invoices.exporting import export_period, period_lines_csv, safe_cell
from invoices.models import Classification, Invoice, InvoiceEvent
from tests import billing_fixtures as make

pytestmark = pytest.mark.django_db
OCTOBER = Period.month("2026-10")


@pytest.fixture
def month():
    make.firm()
    dev = make.category("development", code="L250")
    acme = make.client("Acme")
    project = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    make.entry(project, ana, minutes=90, notes="Drafted the motion")
    vague = make.entry(project, ana, minutes=30, notes="misc", task="Other")
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    return {"invoice": invoice, "vague": vague, "dev": dev}


def staff(username, *codenames):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


OPS = ("view_invoice", "change_invoice", "view_classification", "change_classification")


def test_invoice_list_shows_status_total_and_flags(client, month):
    client.force_login(staff("ops", *OPS))
    page = client.get(reverse("admin:invoices_invoice_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "draft #" in html and "Acme" in html and "300.00" in html
    assert "Entries pending review" in html


def test_invoice_page_shows_lines_entries_derivation_pending_and_totals(client, month):
    client.force_login(staff("ops", *OPS))
    url = reverse("admin:invoices_invoice_change", args=[month["invoice"].pk])
    html = client.get(url).content.decode()
    assert "Drafted the motion" in html  # the line and its entry
    assert "1.5000" in html and "200.00" in html and "300.00" in html
    assert "8. role" in html  # rate level in the derivation
    assert "1.5000 h x 200.00 = 300.00 USD" in html
    assert "Pending review (1)" in html and "no category" in html
    assert 'value="Approve"' not in html  # ops staff have no approve permission


def test_ops_staff_cannot_approve(client, month):
    client.force_login(staff("ops", *OPS))
    invoice = month["invoice"]
    client.post(reverse("admin:invoices_invoice_approve", args=[invoice.pk]))
    invoice.refresh_from_db()
    assert invoice.status == "draft"


def test_approve_is_refused_while_pending_then_works_after_correction(client, month):
    approver = staff("approver", *OPS, "approve_invoice", "void_invoice")
    client.force_login(approver)
    invoice = month["invoice"]
    response = client.post(
        reverse("admin:invoices_invoice_approve", args=[invoice.pk]), follow=True
    )
    assert "1 entry pending review" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == "draft"

    # The reviewer resolves the pending entry on its classification page.
    change = reverse("admin:invoices_classification_change", args=[month["vague"].pk])
    response = client.post(
        change,
        {
            "manual_category": month["dev"].pk,
            "manual_billable": "unknown",
            "manual_description": "Research for the motion",
        },
    )
    assert response.status_code == 302
    c = Classification.objects.get(entry=month["vague"])
    assert (c.tier, c.description, c.needs_review) == ("manual", "Research for the motion", False)
    invoice.refresh_from_db()
    assert invoice.total == D("400.00")

    client.post(reverse("admin:invoices_invoice_approve", args=[invoice.pk]))
    invoice.refresh_from_db()
    assert invoice.status == "approved" and invoice.approved_by == approver
    html = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).content.decode()
    assert 'value="Approve"' not in html and 'value="Rebuild"' not in html
    # An approved invoice's entries cannot be corrected.
    assert client.get(change).status_code in (200, 302)
    response = client.post(
        change, {"manual_category": "", "manual_billable": "false", "manual_description": ""}
    )
    assert response.status_code == 403
    assert Classification.objects.get(entry=month["vague"]).manual_category == month["dev"]


def test_void_releases_and_is_audited(client, month):
    approver = staff("approver", *OPS, "approve_invoice", "void_invoice")
    client.force_login(approver)
    invoice = month["invoice"]
    client.post(reverse("admin:invoices_invoice_void", args=[invoice.pk]), {"reason": "duplicate"})
    invoice.refresh_from_db()
    assert invoice.status == "void"
    event = InvoiceEvent.objects.get(invoice=invoice, action="void")
    assert (event.actor, event.detail["reason"]) == (approver, "duplicate")


def test_invoices_cannot_be_added_or_deleted_by_hand(client, month):
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    assert client.get(reverse("admin:invoices_invoice_add")).status_code == 403
    url = reverse("admin:invoices_invoice_delete", args=[month["invoice"].pk])
    assert client.get(url).status_code == 403


def test_draft_view_drafts_a_period(client, month):
    client.force_login(staff("ops", *OPS))
    Invoice.objects.all().delete()
    response = client.post(reverse("admin:invoices_invoice_draft"), {"month": "2026-10"})
    assert response.status_code == 302
    assert Invoice.objects.get().total == D("300.00")
    bad = client.post(reverse("admin:invoices_invoice_draft"), {"month": "2026-13"})
    assert "not a month" in bad.content.decode()


def test_csv_export_neutralises_formulas(month):
    c = Classification.objects.get(entry=month["vague"])
    c.manual_category, c.manual_description = month["dev"], '=HYPERLINK("http://evil.example")'
    c.save()
    draft_invoices(period=OCTOBER)
    text = period_lines_csv(export_period(period=OCTOBER))
    assert "'=HYPERLINK" in text
    assert ",=HYPERLINK" not in text
    assert [safe_cell(v) for v in ["+1", "-2", "@x", "\tx", "plain", D("-5.00")]] == [
        "'+1",
        "'-2",
        "'@x",
        "'\tx",
        "plain",
        "-5.00",
    ]
