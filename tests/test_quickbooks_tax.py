"""Taxes in the QuickBooks push (billing semantics 12.6, docs/quickbooks.md "Taxes"), against
the fake QuickBooks over real HTTP: TaxCodeRef per line and TxnTaxDetail for a VAT/GST company
(the fake's non-US mode), TAX/NON per line for a US company, and every difference in tax
flagged on the push."""

# ruff: noqa: F811 (the fixtures of tests/test_quickbooks.py, imported by name)

import json
from decimal import Decimal as D

import pytest

from invoices.approval import approve_invoice
from invoices.drafting import Period, draft_invoices
from invoices.models import ClientPolicy, Flag, Invoice, InvoiceEvent, TaxCode, TaxOverride
from tests.fakes.quickbooks_server import quickbooks_fake  # noqa: F401
from tests.test_quickbooks import (  # noqa: F401 (fixtures)
    fake,
    mapped,
    month,
    push_now,
    pusher,
    queue,
)

pytestmark = pytest.mark.django_db


def taxed(mapped, pusher, *, rate, quickbooks_id, exempt_research=False) -> Invoice:
    """The month's Acme invoice (300.00 + 100.00, cap -50.00, discount -35.00: 315.00),
    redrafted with a tax code and approved."""
    code = TaxCode.objects.create(name="Tax", rate=rate, quickbooks_id=quickbooks_id)
    ClientPolicy.objects.filter(client=mapped["client"]).update(tax_code=code)
    if exempt_research:
        TaxOverride.objects.create(category=mapped["research"], tax_code=None)
    [invoice] = draft_invoices(period=Period.month("2026-10")).invoices
    approve_invoice(invoice=invoice, user=pusher)
    invoice.refresh_from_db()
    return invoice


def sent_body(fake) -> dict:
    [create] = fake.invoice_creates()
    return json.loads(create.body, parse_float=D)


def test_vat_company_gets_a_tax_code_on_every_line_and_our_total_tax(mapped, fake, pusher):
    fake.switches.non_us_tax_rates = {"5": D("19")}
    invoice = taxed(mapped, pusher, rate=D("19"), quickbooks_id="5")
    assert (invoice.total, invoice.tax_total) == (D("315.00"), D("59.85"))
    row = push_now(queue(invoice, pusher))
    body = sent_body(fake)
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"] for ln in body["Line"]] == [
        {"value": "5"}
    ] * 4  # the cap and the discount lower the one code's base, as our shares did
    assert body["TxnTaxDetail"] == {"TotalTax": D("59.85")}
    assert '"TotalTax":59.85' in fake.invoice_creates()[0].body  # an exact JSON number
    assert (row.status, row.qbo_total, row.last_error) == ("pushed", D("374.85"), "")
    detail = InvoiceEvent.objects.get(action="qbo_pushed").detail
    assert (detail["qbo_tax"], detail["tax_total"]) == ("59.85", "59.85")


def test_vat_company_computing_another_tax_flags_the_push(mapped, fake, pusher):
    fake.switches.non_us_tax_rates = {"5": D("20")}  # QuickBooks' rate for the code differs
    invoice = taxed(mapped, pusher, rate=D("19"), quickbooks_id="5")
    row = push_now(queue(invoice, pusher))
    assert row.status == "mismatch"
    assert row.last_error == (
        "QuickBooks' total is 378.00 EUR, ours is 374.85 (+3.15 EUR); its tax is 63.00 EUR, "
        f"ours 59.85: check tax and line settings of QuickBooks invoice {invoice.number} "
        "before sending it"
    ).replace("EUR", invoice.currency)
    assert Flag.QBO_MISMATCH in Invoice.objects.get(pk=invoice.pk).flags


def test_the_fakes_non_us_mode_refuses_a_line_without_a_tax_code(mapped, fake, pusher):
    fake.switches.non_us_tax_rates = {"5": D("19")}
    approve_invoice(invoice=mapped["invoice"], user=pusher)  # no tax code: no TaxCodeRef sent
    row = push_now(queue(Invoice.objects.get(pk=mapped["invoice"].pk), pusher))
    assert row.status == "failed"
    assert "Line 1 has none" in row.last_error
    assert fake.invoices == {}


def test_an_exempt_line_of_a_vat_invoice_is_refused_before_sending(mapped, fake, pusher):
    fake.switches.non_us_tax_rates = {"5": D("19")}
    invoice = taxed(mapped, pusher, rate=D("19"), quickbooks_id="5", exempt_research=True)
    row = push_now(queue(invoice, pusher))
    assert row.status == "failed"
    assert row.last_error.startswith(
        f"{invoice.number}: line 2 (Research: Case law) has no single QuickBooks tax code"
    )
    assert fake.invoice_creates() == []


def test_an_unmapped_tax_code_is_refused_with_its_name(mapped, fake, pusher):
    invoice = taxed(mapped, pusher, rate=D("19"), quickbooks_id="")
    row = push_now(queue(invoice, pusher))
    assert (row.status, row.last_error) == (
        "failed",
        f"{invoice.number}: tax code Tax has no QuickBooks TaxCode id; set it under Tax codes "
        "(the TaxCode's Id in QuickBooks) and rebuild the draft",
    )


def test_us_company_marks_lines_taxable_and_takes_quickbooks_tax_per_quickbooks(
    mapped, fake, pusher
):
    fake.switches.tax_percent = D("8")  # automated sales tax
    invoice = taxed(mapped, pusher, rate=None, quickbooks_id="TAX")
    assert (invoice.tax_total, invoice.tax_summary[0]["tax"]) == (D("0.00"), None)
    row = push_now(queue(invoice, pusher))
    body = sent_body(fake)
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in body["Line"]] == ["TAX"] * 4
    assert "TxnTaxDetail" not in body  # QuickBooks computes it
    assert (row.status, row.qbo_total) == ("pushed", D("340.20"))  # 315.00 + 8% = 25.20
    assert InvoiceEvent.objects.get(action="qbo_pushed").detail["qbo_tax"] == "25.20"


def test_us_company_tax_differing_from_ours_is_flagged_never_hidden(mapped, fake, pusher):
    fake.switches.tax_percent = D("8")
    invoice = taxed(mapped, pusher, rate=D("8.25"), quickbooks_id="TAX")
    assert invoice.tax_total == D("25.99")  # 315.00 x 8.25% = 25.9875
    row = push_now(queue(invoice, pusher))
    assert row.status == "mismatch"
    assert row.last_error.startswith(
        "QuickBooks' total is 340.20 USD, ours is 340.99 (-0.79 USD); its tax is 25.20 USD, "
        "ours 25.99"
    )


def test_us_company_exempt_line_is_non_taxable(mapped, fake, pusher):
    fake.switches.tax_percent = D("8")
    invoice = taxed(mapped, pusher, rate=None, quickbooks_id="TAX", exempt_research=True)
    push_now(queue(invoice, pusher))
    refs = [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in sent_body(fake)["Line"]]
    assert refs == ["TAX", "NON", "TAX", "TAX"]
