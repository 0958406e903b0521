"""Billing semantics section 12 (taxes): one test per rule, pure ones first, then drafted
invoices on the real PostgreSQL."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal as D

import pytest

from invoices.core.policy import Policy
from invoices.core.pricing import SUBTOTAL_KINDS, ManualCharge, PricedEntry, price_invoice
from invoices.core.rates import RateRow, RateTable
from invoices.core.tax import (
    TAXABLE_KINDS,
    TaxCode,
    TaxLocus,
    TaxPolicy,
    TaxRate,
    allocate,
    tax_invoice,
)

VAT = TaxCode("VAT 19%", (TaxRate("VAT 19%", D("19")),), quickbooks_id="5")
REDUCED = TaxCode("VAT 7%", (TaxRate("VAT 7%", D("7")),), quickbooks_id="6")
# Quebec before 2013: QST charged on the price plus GST.
GST_QST = TaxCode(
    "GST+QST",
    (TaxRate("GST", D("5")), TaxRate("QST", D("9.5"), compound=True)),
    quickbooks_id="9",
)
GST_PST = TaxCode("GST+PST", (TaxRate("GST", D("5")), TaxRate("PST", D("7"))))
US_AST = TaxCode("Sales tax", (TaxRate("Sales tax", None),), quickbooks_id="TAX")


@dataclass
class L:
    kind: str
    amount: D
    category: str | None = "development"
    project: int | None = 10


def by_invoice(**kw):
    return TaxPolicy(locus=TaxLocus.INVOICE, default=VAT, **kw)


def by_line(**kw):
    return TaxPolicy(locus=TaxLocus.LINE, default=VAT, **kw)


def test_taxable_kinds_are_what_the_subtotal_sums():
    assert frozenset(map(str, SUBTOTAL_KINDS)) == TAXABLE_KINDS


# --- 12.4: per invoice, the code's bases are summed and rounded once ----------------------


def test_s12_4_per_invoice_rounds_once_on_the_summed_base():
    # 0.10 x 19% = 0.019 per line: per line rounds each to 0.02 (0.06); on the invoice
    # 0.30 x 19% = 0.057 -> 0.06; with three lines of 0.05: 0.0095 -> 0.01 each (0.03) but
    # 0.15 x 19% = 0.0285 -> 0.03. 0.35 + 0.35: per line 0.0665 -> 0.07 each = 0.14; once 0.13.
    lines = [L("time", D("0.35")), L("time", D("0.35"))]
    assert tax_invoice(lines, taxes=by_invoice(), currency="EUR").total == D("0.13")
    assert tax_invoice(lines, taxes=by_line(), currency="EUR").total == D("0.14")


def test_s12_4_per_line_rounds_each_line_and_stores_its_tax():
    result = tax_invoice(
        [L("time", D("0.35")), L("time", D("10.00"))], taxes=by_line(), currency="EUR"
    )
    assert [lt.amount for lt in result.lines] == [D("0.07"), D("1.90")]
    assert result.total == D("1.97")
    [row] = result.summary
    assert (row.code, row.rate.base, row.rate.tax) == ("VAT 19%", D("10.35"), D("1.97"))


def test_s12_4_per_invoice_lines_have_a_base_but_no_tax_of_their_own():
    result = tax_invoice([L("time", D("100.00"))], taxes=by_invoice(), currency="EUR")
    [line] = result.lines
    assert (line.base, line.amount) == (D("100.00"), None)
    assert result.total == D("19.00")


def test_s12_4_rounding_is_half_up():
    # 0.50 x 7% = 0.035: half up gives 0.04, half even 0.04 too; 1.50 x 7% = 0.105 -> 0.11
    # (half even: 0.10).
    taxes = TaxPolicy(locus=TaxLocus.INVOICE, default=REDUCED)
    assert tax_invoice([L("time", D("1.50"))], taxes=taxes, currency="EUR").total == D("0.11")


def test_s12_4_zero_decimal_currency_rounds_to_whole_units():
    result = tax_invoice([L("time", D("1050"))], taxes=by_invoice(), currency="JPY")
    assert result.total == D("200")  # 199.5 -> 200


# --- 12.1: compound codes apply on the base plus the earlier taxes ------------------------


def test_s12_1_compound_tax_applies_on_base_plus_earlier_tax():
    taxes = TaxPolicy(default=GST_QST)
    result = tax_invoice([L("time", D("100.00"))], taxes=taxes, currency="CAD")
    assert [(r.rate.rate.name, r.rate.base, r.rate.tax) for r in result.summary] == [
        ("GST", D("100.00"), D("5.00")),
        ("QST", D("105.00"), D("9.98")),  # 9.975 half up
    ]
    assert result.total == D("14.98")


def test_s12_1_non_compound_taxes_each_apply_on_the_base():
    taxes = TaxPolicy(default=GST_PST)
    result = tax_invoice([L("time", D("100.00"))], taxes=taxes, currency="CAD")
    assert [r.rate.base for r in result.summary] == [D("100.00"), D("100.00")]
    assert result.total == D("12.00")


def test_s12_1_compound_per_line_uses_the_rounded_earlier_tax_of_the_line():
    taxes = TaxPolicy(locus=TaxLocus.LINE, default=GST_QST)
    result = tax_invoice([L("time", D("0.30")), L("time", D("0.30"))], taxes=taxes, currency="CAD")
    # GST 0.015 -> 0.02 per line; QST on 0.32 = 0.0304 -> 0.03 per line.
    assert [lt.amount for lt in result.lines] == [D("0.05"), D("0.05")]
    assert result.total == D("0.10")


def test_s12_1_per_quickbooks_rate_is_not_computed_here():
    taxes = TaxPolicy(default=US_AST)
    result = tax_invoice([L("time", D("100.00"))], taxes=taxes, currency="USD")
    [row] = result.summary
    assert (row.rate.base, row.rate.tax, result.total, result.per_quickbooks) == (
        D("100.00"),
        None,
        D("0"),
        True,
    )


# --- 12.2: which code a line has ---------------------------------------------------------


def test_s12_2_kind_override_beats_category_override_beats_client_default():
    taxes = by_invoice(
        by_category={"books": REDUCED}, by_kind={"expense": None, "fixed_fee": REDUCED}
    )
    lines = [
        L("time", D("100.00")),
        L("time", D("100.00"), category="books"),
        L("expense", D("100.00"), category="books"),
        L("fixed_fee", D("100.00")),
    ]
    result = tax_invoice(lines, taxes=taxes, currency="EUR")
    assert [lt.code.name if lt.code else None for lt in result.lines] == [
        "VAT 19%",
        "VAT 7%",
        None,
        "VAT 7%",
    ]
    assert [(r.code, r.rate.base, r.rate.tax) for r in result.summary] == [
        ("VAT 19%", D("100.00"), D("19.00")),
        ("VAT 7%", D("200.00"), D("14.00")),
    ]


def test_s12_2_a_client_without_a_code_has_no_tax():
    taxes = TaxPolicy(locus=TaxLocus.INVOICE, default=None)
    result = tax_invoice([L("time", D("100.00"))], taxes=taxes, currency="EUR")
    assert (result.total, result.summary, result.lines[0].reason) == (
        D("0"),
        (),
        "the client has no tax code",
    )


def test_s12_2_no_charge_cap_and_discount_lines_have_no_tax_of_their_own():
    lines = [L("time", D("100.00")), L("no_charge", D("0")), L("discount", D("-10.00"), None, None)]
    result = tax_invoice(lines, taxes=by_invoice(), currency="EUR")
    assert result.lines[1:] == (None, None)
    assert result.total == D("17.10")  # 90.00 x 19%


# --- 12.3: caps, discounts and credits lower the taxable base of their lines -------------


def test_s12_3_allocation_adds_back_exactly_and_gives_remainders_to_the_largest_fractions():
    assert allocate(D("-10.00"), [D("1"), D("1"), D("1")], "EUR") == [
        D("-3.34"),
        D("-3.33"),
        D("-3.33"),
    ]
    assert allocate(D("-0.05"), [D("100"), D("0"), D("-5")], "EUR") == [
        D("-0.05"),
        D("0.00"),
        D("0.00"),
    ]


def test_s12_3_a_cap_lowers_only_its_projects_lines():
    lines = [
        L("time", D("300.00"), project=10),
        L("time", D("100.00"), project=20),
        L("cap", D("-100.00"), None, 10),
    ]
    result = tax_invoice(lines, taxes=by_line(), currency="EUR")
    assert [lt.base for lt in result.lines[:2]] == [D("200.00"), D("100.00")]
    assert result.lines[0].shares == ("cap share -100.00",)
    assert result.total == D("57.00")


def test_s12_3_a_discount_is_shared_by_every_line_exempt_ones_included():
    taxes = by_invoice(by_kind={"expense": None})
    lines = [
        L("time", D("300.00")),
        L("expense", D("100.00")),
        L("discount", D("-40.00"), None, None),
    ]
    result = tax_invoice(lines, taxes=taxes, currency="EUR")
    assert [lt.base for lt in result.lines[:2]] == [D("270.00"), D("90.00")]
    assert result.total == D("51.30")  # 270.00 x 19%, the expense's share lowers no tax


def test_s12_3_a_credit_is_taxed_with_its_own_code_and_lowers_that_tax():
    lines = [L("time", D("200.00")), L("credit", D("-50.00"))]
    result = tax_invoice(lines, taxes=by_invoice(), currency="EUR")
    assert result.summary[0].rate.base == D("150.00")
    assert result.total == D("28.50")


def test_s12_3_the_discount_share_follows_the_cap_share():
    lines = [
        L("time", D("300.00"), project=10),
        L("time", D("100.00"), project=20),
        L("cap", D("-100.00"), None, 10),
        L("discount", D("-30.00"), None, None),  # 10% of 300.00
    ]
    result = tax_invoice(lines, taxes=by_invoice(), currency="EUR")
    assert [lt.base for lt in result.lines[:2]] == [D("180.00"), D("90.00")]


# --- Through pricing: the derivation explains the tax ------------------------------------

DAY = dt.date(2026, 10, 5)


def _entry(id: int, minutes: int) -> PricedEntry:
    return PricedEntry(
        id=id,
        date=DAY,
        seconds=minutes * 60,
        person=100,
        person_name="Ana Pereira",
        role="Partner",
        project=10,
        project_code="P",
        project_name="Project P",
        task="",
        category="development",
        category_name="Development",
        description=f"note {id}",
        source_label="rule #1",
        billable=True,
        billing_code="",
        needs_review=False,
    )


def test_price_invoice_taxes_its_lines_and_explains_it():
    policy = Policy(currency="EUR", discount_percent=D("10"))
    rates = RateTable([RateRow(1, D("150.00"), role="Partner")])
    fee = ManualCharge(1, "fixed_fee", "Setup", D("1"), D("100.00"), "agreed", "ana")
    draft = price_invoice(
        [_entry(1, 60)], policy=policy, rates=rates, client=1, manual=[fee], taxes=by_invoice()
    )
    assert draft.total == D("225.00")
    assert draft.tax.total == D("42.75")  # 225.00 x 19%
    time_line = draft.lines[0]
    assert time_line.derivation["tax"] == {
        "code": "VAT 19%",
        "why": "the client's tax code",
        "base": "135.00",
        "base_shares": ["discount share -15.00"],
        "taxes": [],
        "arithmetic": "tax on the invoice per code",
    }
    assert "tax" not in draft.lines[-1].derivation  # the discount line


def test_price_invoice_without_taxes_is_unchanged():
    policy = Policy(currency="EUR")
    rates = RateTable([RateRow(1, D("150.00"), role="Partner")])
    draft = price_invoice([_entry(1, 60)], policy=policy, rates=rates, client=1)
    assert (draft.tax.total, draft.tax.summary, "tax" in draft.lines[0].derivation) == (
        D("0"),
        (),
        False,
    )


def test_tax_core_imports_no_django():
    import ast
    import pathlib

    import invoices.core.tax as module

    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    names = [
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in (n.names if isinstance(n, ast.Import) else [n])
    ]
    assert not [n for n in names if n.startswith("django")]


# --- Drafted invoices on PostgreSQL: the figures are stored as the core computed them -----


@pytest.fixture
def vat_client(db):
    from invoices.models import ClientPolicy, TaxCode
    from tests import billing_fixtures as make

    make.firm(currency="EUR")
    dev = make.category("development")
    make.rule(dev, task="Dev")
    vat = TaxCode.objects.create(name="VAT 19%", rate=D("19"), quickbooks_id="5")
    client = make.client("Lumen GmbH")
    ClientPolicy.objects.filter(client=client).update(tax_code=vat, discount_percent=D("10"))
    project = make.project(client, "LUM")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("150.00", role="Partner")
    return {"client": client, "project": project, "ana": ana, "vat": vat, "dev": dev}


def _draft():
    from invoices.drafting import Period, draft_invoices

    [invoice] = draft_invoices(period=Period.month("2026-10")).invoices
    invoice.refresh_from_db()
    return invoice


@pytest.mark.django_db
def test_drafting_stores_the_tax_total_summary_and_each_lines_tax(vat_client):
    from invoices.models import InvoiceLine
    from tests import billing_fixtures as make

    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    make.entry(vat_client["project"], vat_client["ana"], minutes=30)
    invoice = _draft()
    # 225.00 - 10% = 202.50; 202.50 x 19% = 38.475 -> 38.48 once on the invoice.
    assert (invoice.total, invoice.tax_total, invoice.total_with_tax) == (
        D("202.50"),
        D("38.48"),
        D("240.98"),
    )
    assert invoice.tax_summary == [
        {
            "code": "VAT 19%",
            "quickbooks_id": "5",
            "name": "VAT 19%",
            "rate": "19.0000",
            "compound": False,
            "base": "202.50",
            "tax": "38.48",
        }
    ]
    lines = list(InvoiceLine.objects.filter(invoice=invoice).order_by("position"))
    assert [(ln.kind, ln.tax_code, ln.tax_base, ln.tax_amount) for ln in lines] == [
        ("time", "VAT 19%", D("135.00"), None),
        ("time", "VAT 19%", D("67.50"), None),
        ("discount", "", None, None),
    ]
    assert lines[0].derivation["tax"]["base_shares"] == ["discount share -15.00"]


@pytest.mark.django_db
def test_drafting_per_line_stores_each_lines_rounded_tax(vat_client):
    from invoices.models import Firm, InvoiceLine
    from tests import billing_fixtures as make

    Firm.objects.filter(id=1).update(tax_calculation="line")
    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    make.entry(vat_client["project"], vat_client["ana"], minutes=30)
    invoice = _draft()
    amounts = list(
        InvoiceLine.objects.filter(invoice=invoice, kind="time")
        .order_by("position")
        .values_list("tax_amount", flat=True)
    )
    assert amounts == [D("25.65"), D("12.83")]  # 135.00 and 67.50 (12.825 half up) x 19%
    assert invoice.tax_total == D("38.48")


@pytest.mark.django_db
def test_drafting_a_category_override_exempts_its_lines(vat_client):
    from invoices.models import TaxOverride
    from tests import billing_fixtures as make

    TaxOverride.objects.create(category=vat_client["dev"], tax_code=None)
    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    invoice = _draft()
    assert (invoice.tax_total, invoice.tax_summary) == (D("0.00"), [])
    assert invoice.lines.get(kind="time").derivation["tax"]["why"] == (
        "override for category development"
    )


@pytest.mark.django_db
def test_a_client_without_tax_code_drafts_as_before(vat_client):
    from invoices.models import ClientPolicy
    from tests import billing_fixtures as make

    ClientPolicy.objects.filter(client=vat_client["client"]).update(tax_code=None)
    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    invoice = _draft()
    assert (invoice.total, invoice.tax_total, invoice.total_with_tax) == (
        D("135.00"),
        D("0.00"),
        D("135.00"),
    )


# --- The printable invoice: a summary per rate and the total with tax ---------------------


@pytest.mark.django_db
def test_printable_invoice_shows_the_tax_per_rate_and_the_total_with_tax(vat_client):
    from django.template.loader import render_to_string

    from invoices.printing import invoice_document
    from tests import billing_fixtures as make

    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    make.entry(vat_client["project"], vat_client["ana"], minutes=30)
    document = invoice_document(invoice=_draft())
    assert (document.total_before_tax, document.total) == ("202.50", "240.98")
    assert [(t.name, t.rate, t.base, t.tax) for t in document.taxes] == [
        ("VAT 19%", "19%", "202.50", "38.48")
    ]
    html = render_to_string("invoices/invoice_print.html", {"doc": document})
    assert 'Total before tax</th><td class="num" id="invoice-total-before-tax">202.50' in html
    assert 'VAT 19% (19% of 202.50)</th><td class="num">38.48</td>' in html
    assert 'id="invoice-total">240.98</td>' in html
    assert '<tr><td>VAT 19%</td><td class="num">19%</td><td class="num">202.50</td>' in html


@pytest.mark.django_db
def test_printable_invoice_without_tax_has_no_tax_rows(vat_client):
    from django.template.loader import render_to_string

    from invoices.models import ClientPolicy
    from invoices.printing import invoice_document
    from tests import billing_fixtures as make

    ClientPolicy.objects.filter(client=vat_client["client"]).update(tax_code=None)
    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    html = render_to_string(
        "invoices/invoice_print.html", {"doc": invoice_document(invoice=_draft())}
    )
    assert "Total before tax" not in html and "tax-summary" not in html
    assert html.split('id="invoice-total">')[1][:10] == "135.00</td"  # 150.00 less the 10% discount


# --- A change of tax configuration marks drafts stale (they rebuild with it) --------------


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["code", "override", "firm"])
def test_a_tax_configuration_change_marks_the_drafts_stale(vat_client, change):
    from invoices.models import Firm, Flag, TaxCode, TaxOverride
    from tests import billing_fixtures as make

    make.entry(vat_client["project"], vat_client["ana"], minutes=60)
    invoice = _draft()
    assert Flag.STALE not in invoice.flags
    if change == "code":
        TaxCode.objects.filter(pk=vat_client["vat"].pk).update(rate=D("16"))
    elif change == "override":
        TaxOverride.objects.create(line_kind="expense", tax_code=None)
    else:
        Firm.objects.filter(id=1).update(tax_calculation="line")
    invoice.refresh_from_db()
    assert Flag.STALE in invoice.flags


@pytest.mark.django_db
def test_tax_configuration_loads_in_four_queries_whatever_the_clients(vat_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from invoices.configuration import load_taxes
    from invoices.models import ClientPolicy, TaxCode, TaxOverride
    from tests import billing_fixtures as make

    reduced = TaxCode.objects.create(name="VAT 7%", rate=D("7"), applies_after=vat_client["vat"])
    TaxOverride.objects.create(category=vat_client["dev"], tax_code=reduced)
    for n in range(5):
        ClientPolicy.objects.filter(client=make.client(f"Client {n}")).update(tax_code=reduced)
    with CaptureQueriesContext(connection) as queries:
        taxes = load_taxes()
    assert len(queries) == 4
    assert len(taxes) == 7  # the defaults, Lumen and the five
    assert [r.name for r in taxes[vat_client["client"].pk].by_category["development"].rates] == [
        "VAT 19%",
        "VAT 7%",
    ]
