"""Tax codes in the admin, and tax on the invoice review page (billing semantics 12)."""

from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from invoices.drafting import Period, draft_invoices
from invoices.models import ClientPolicy, TaxCode
from tests import billing_fixtures as make

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("boss", password="x")
    client.force_login(user)
    return client


def test_tax_code_list_and_edit(admin_client):
    TaxCode.objects.create(name="VAT 19%", rate=D("19"), quickbooks_id="5")
    TaxCode.objects.create(name="US sales tax", rate=None, quickbooks_id="TAX")
    page = admin_client.get(reverse("admin:invoices_taxcode_changelist")).content.decode()
    assert "VAT 19%" in page and "19%" in page and "per QuickBooks" in page
    response = admin_client.post(
        reverse("admin:invoices_taxcode_add"),
        {"name": "GST", "rate": "5", "compound": "", "applies_after": "", "quickbooks_id": "3"},
    )
    assert response.status_code == 302
    assert TaxCode.objects.get(name="GST").rate == D("5.0000")


def test_a_chain_of_codes_cannot_loop(admin_client):
    gst = TaxCode.objects.create(name="GST", rate=D("5"))
    qst = TaxCode.objects.create(name="QST", rate=D("9.975"), compound=True, applies_after=gst)
    response = admin_client.post(
        reverse("admin:invoices_taxcode_change", args=[gst.pk]),
        {"name": "GST", "rate": "5", "applies_after": str(qst.pk), "quickbooks_id": ""},
    )
    assert response.status_code == 200
    assert "GST already applies after this code" in response.content.decode()
    gst.refresh_from_db()
    assert gst.applies_after is None


def test_review_page_shows_the_tax_summary(admin_client):
    make.firm(currency="EUR")
    dev = make.category("development")
    make.rule(dev, task="Dev")
    vat = TaxCode.objects.create(name="VAT 19%", rate=D("19"), quickbooks_id="5")
    client = make.client("Lumen GmbH")
    ClientPolicy.objects.filter(client=client).update(tax_code=vat)
    project = make.project(client, "LUM")
    make.entry(project, make.person("Ana Pereira", "Partner"), minutes=60)
    make.rate("150.00", role="Partner")
    [invoice] = draft_invoices(period=Period.month("2026-10")).invoices
    page = admin_client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    html = page.content.decode()
    assert '<div id="tax-summary">' in html
    assert '<td class="num" id="invoice-tax-total">28.50</td>' in html
    assert '<strong id="invoice-total-with-tax">178.50</strong>' in html


def test_review_page_explains_each_lines_tax(admin_client):
    make.firm(currency="EUR")
    dev = make.category("development")
    make.rule(dev, task="Dev")
    vat = TaxCode.objects.create(name="VAT 19%", rate=D("19"), quickbooks_id="5")
    client = make.client("Lumen GmbH", discount_percent=D("10"))
    ClientPolicy.objects.filter(client=client).update(tax_code=vat)
    project = make.project(client, "LUM")
    make.entry(project, make.person("Ana Pereira", "Partner"), minutes=60)
    make.rate("150.00", role="Partner")
    [invoice] = draft_invoices(period=Period.month("2026-10")).invoices
    html = admin_client.get(
        reverse("admin:invoices_invoice_change", args=[invoice.pk])
    ).content.decode()
    assert (
        "<strong>Tax</strong> (billing semantics 12): VAT 19%, the client&#x27;s tax code; "
        "base 135.00 (discount share -15.00); tax on the invoice per code"
    ) in html
