"""Tax codes in the rules file (billing semantics 12 and 9): import, export round trip, and
errors that name the bad code."""

from decimal import Decimal as D

import pytest
import yaml

from invoices.models import ClientPolicy, Firm, TaxCode
from invoices.rulesfile import RulesFileInvalid, export_rules, import_rules

pytestmark = pytest.mark.django_db

TAXED = """
firm:
  name: Taxed firm
  currency: CAD
  tax_calculation: line
tax_codes:
- name: GST
  rate: '5'
  quickbooks_id: '3'
- name: GST+QST
  rate: '9.975'
  compound: true
  applies_after: GST
  quickbooks_id: '9'
- name: US sales tax
  rate: per QuickBooks
clients:
- name: Maple Inc
  tax_code: GST+QST
- name: Untaxed Co
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(RulesFileInvalid) as caught:
        import_rules(text)
    return [str(error) for error in caught.value.errors]


def test_tax_codes_and_a_clients_code_are_imported():
    import_rules(TAXED)
    codes = {c.name: c for c in TaxCode.objects.select_related("applies_after")}
    assert [(c.rate, c.compound, c.quickbooks_id) for c in codes.values()] == [
        (D("5.0000"), False, "3"),
        (D("9.9750"), True, "9"),
        (None, False, ""),
    ]
    assert codes["GST+QST"].applies_after == codes["GST"]
    assert ClientPolicy.objects.get(client__name="Maple Inc").tax_code == codes["GST+QST"]
    assert ClientPolicy.objects.get(client__name="Untaxed Co").tax_code is None
    assert Firm.load().tax_calculation == "line"


def test_tax_codes_round_trip():
    import_rules(TAXED)
    exported = export_rules()
    data = yaml.safe_load(exported)
    assert data["firm"]["tax_calculation"] == "line"
    assert data["tax_codes"] == [
        {"name": "GST", "rate": "5", "compound": False, "quickbooks_id": "3"},
        {
            "name": "GST+QST",
            "rate": "9.975",
            "compound": True,
            "applies_after": "GST",
            "quickbooks_id": "9",
        },
        {"name": "US sales tax", "rate": "per QuickBooks", "compound": False},
    ]
    assert data["clients"][0]["tax_code"] == "GST+QST"
    assert "tax_code" not in data["clients"][1]
    summary = import_rules(exported)
    assert (summary.tax_codes.unchanged, summary.policies.unchanged) == (3, 2)
    assert export_rules() == exported


def test_a_clients_unknown_tax_code_is_named():
    text = TAXED.replace("tax_code: GST+QST", "tax_code: VAT 19%")
    assert errors_of(text) == [
        "clients[0].tax_code: unknown tax code 'VAT 19%' (tax_codes lists: GST, GST+QST, "
        "US sales tax)"
    ]
    assert not TaxCode.objects.exists()


def test_applies_after_an_unknown_code_or_itself_is_refused():
    unknown = TAXED.replace("applies_after: GST\n", "applies_after: HST\n")
    assert errors_of(unknown) == [
        "tax_codes[1].applies_after: unknown tax code 'HST' (not in tax_codes)"
    ]
    loop = TAXED.replace(
        "  quickbooks_id: '3'\n", "  applies_after: GST+QST\n  quickbooks_id: '3'\n"
    )
    assert errors_of(loop) == [
        "tax_codes[0].applies_after: tax code 'GST' applies after itself (GST -> GST+QST -> GST)",
        "tax_codes[1].applies_after: tax code 'GST+QST' applies after itself "
        "(GST+QST -> GST -> GST+QST)",
    ]


@pytest.mark.parametrize("rate", ["'101'", "'-1'", "'five'", "'0.00001'", "per Xero"])
def test_a_bad_tax_rate_is_refused(rate):
    text = TAXED.replace("rate: '5'\n", f"rate: {rate}\n")
    [error] = errors_of(text)
    assert error.startswith("tax_codes[0].rate: ")


def test_a_duplicate_tax_code_is_refused():
    text = TAXED.replace("- name: US sales tax", "- name: GST")
    assert errors_of(text) == [
        "tax_codes[2].name: duplicate tax code 'GST' (also tax_codes[0].name)"
    ]
