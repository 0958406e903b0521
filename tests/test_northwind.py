"""The Northwind month end, end to end: rules file, the three trackers' October exports,
classification, drafting and the JSON export, compared with figures computed by hand.

The expected file (tests/data/expected/northwind_2026-10.json) was computed independently of
the product's code, straight from the CSVs and docs/billing-semantics.md. A few lines, worked:

Acme Legal LLP (6-minute increments rounded up, 6-minute minimum, one line per entry):
- Ben Okafor, 2026-10-01, "Meeting w/ GC re: discovery schedule", Harvest 0.33 h = 1188 s
  = 19.8 min -> up to 24 min = 0.4 h. The notes match the firm rule "discovery" (L110). Ben is a
  Senior Consultant; his own 240.00 rate starts 2026-10-15, so the role rate 225.00 applies:
  0.4 x 225.00 = 90.00.
- Cleo Marsh, 2026-10-01, "Bugfix: pagination", 0.05 h = 3 min -> minimum 6 min = 0.1 h at the
  Consultant rate 165.00 = 16.50.
- Travel is billed at half rate (multiplier 0.5): a Partner's client rate 300.00 -> 150.00.
- Design and project-management entries have no billing code and Acme requires one: they are
  pending, on no line, and the draft cannot be approved.

Globex Retail (EUR, 15-minute increments to nearest, lines per category and person, 5 %
discount, a 12,000.00 cap on GLX-SHOP, non-billable work shown at no charge):
- Every GLX-SHOP entry is priced at the project rate 180.00 (level 3).
- Gia Russo's development on GLX-SHOP: five entries, each rounded to the nearest 15 minutes
  first (rounding locus: entry), 11.25 h in all -> 11.25 x 180.00 = 2,025.00.
- Time lines add up to 14,175.00; the cap removes 14,175.00 - 12,000.00 = 2,175.00; the discount
  is 5 % of (14,175.00 - 2,175.00) = 600.00; the total is 11,400.00.
"""

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from invoices.models import Category, ClassificationRule, Invoice

pytestmark = pytest.mark.django_db

DATA = settings.BASE_DIR / "data" / "northwind"
EXPECTED = settings.BASE_DIR / "tests" / "data" / "expected" / "northwind_2026-10.json"
EXPORTS = [
    "harvest_detailed_time_2026-10.csv",
    "clockify_detailed_report_2026-10.csv",
    "toggl_detailed_2026-10.csv",
]

# What the firm's ops staff add in the admin after their first month: classify by the
# trackers' task names when no more specific rule matched (priority after the file's rules).
TASK_RULES = {
    "Meetings": "client-meeting",
    "Development": "development",
    "Design": "design",
    "Project Management": "project-mgmt",
    "Research": "discovery",
    "Internal": "internal-meeting",
}


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def load_month():
    run("import_rules", str(DATA / "rules.yaml"))
    run("import_entries", *(str(DATA / name) for name in EXPORTS))


def project(document: dict) -> list[dict]:
    """The export reduced to what the hand computation covers (entry keys become counts)."""
    result = []
    for inv in document["invoices"]:
        if inv["client"] not in ("Acme Legal LLP", "Globex Retail"):
            continue
        result.append(
            {
                "client": inv["client"],
                "currency": inv["currency"],
                "status": inv["status"],
                "lines": [{**line, "entries": len(line["entries"])} for line in inv["lines"]],
                "subtotal": inv["subtotal"],
                "adjustments": inv["adjustments"],
                "discount": inv["discount"],
                "total": inv["total"],
                "flags": inv["flags"],
                "pending": [
                    {k: p[k] for k in ("date", "person", "notes", "reason")} for p in inv["pending"]
                ],
            }
        )
    return result


def test_northwind_month_matches_the_hand_computed_invoices():
    load_month()
    for priority, (task, key) in enumerate(TASK_RULES.items(), start=40):
        ClassificationRule.objects.create(
            priority=priority, task=task, category=Category.objects.get(key=key)
        )
    run("draft_invoices", "--period", "2026-10")
    document = json.loads(run("export_invoices", "--period", "2026-10"))

    assert document["format"] == "billables.invoices/1"
    assert project(document) == json.loads(EXPECTED.read_text())
    # Initech and Umbrella Health are drafted too, and every total adds up.
    assert sorted(inv["client"] for inv in document["invoices"]) == [
        "Acme Legal LLP",
        "Globex Retail",
        "Initech",
        "Umbrella Health",
    ]


def test_northwind_with_the_rules_file_alone_leaves_vague_notes_pending():
    load_month()
    out = run("draft_invoices", "--period", "2026-10")
    assert "4 draft(s) (4 new, 0 rebuilt)" in out
    invoices = {inv.client.name: inv for inv in Invoice.objects.select_related("client")}
    pending = {
        name: inv.entry_links.filter(state="pending").count() for name, inv in invoices.items()
    }
    assert pending == {
        "Acme Legal LLP": 41,
        "Globex Retail": 38,
        "Initech": 41,
        "Umbrella Health": 53,
    }
    # Drafting again gives the same drafts, rebuilt.
    ids = sorted(invoices[name].pk for name in invoices)
    assert "0 new, 4 rebuilt" in run("draft_invoices", "--period", "2026-10")
    assert sorted(Invoice.objects.values_list("pk", flat=True)) == ids


def test_reimporting_the_month_changes_nothing():
    load_month()
    run("draft_invoices", "--period", "2026-10")
    before = json.loads(run("export_invoices", "--period", "2026-10"))
    out = run("import_entries", *(str(DATA / name) for name in EXPORTS))
    assert out.count("0 created, 0 updated") == 3
    run("draft_invoices", "--period", "2026-10")
    assert json.loads(run("export_invoices", "--period", "2026-10")) == before


def test_northwind_eu_client_is_drafted_with_vat():
    """Lumen GmbH (EUR, 15-minute increments up, lines per category and person, VAT 19%), from
    its own Harvest export, by hand: every entry is a whole quarter hour, so nothing rounds;
    the project rate 170.00 prices all of them. Eve's kick-off 3.00 h (discovery) = 510.00,
    Ben's development 6.50 + 4.25 + 5.75 = 16.50 h = 2,805.00, Eve's sprint review 1.00 h
    (client meeting) = 170.00; the retro is an internal meeting, not billed and not shown.
    Subtotal 3,485.00; VAT 19% of 3,485.00 = 662.15; due 4,147.15."""
    run("import_rules", str(DATA / "rules.yaml"))
    run("import_entries", str(DATA / "harvest_detailed_time_2026-10_lumen.csv"))
    run("draft_invoices", "--period", "2026-10")
    document = json.loads(run("export_invoices", "--period", "2026-10"))
    # Umbrella's fixed-fee milestone due in October makes its own draft (billing semantics 13.1).
    by_client = {inv["client"]: inv for inv in document["invoices"]}
    assert sorted(by_client) == ["Lumen GmbH", "Umbrella Health"]
    lumen = by_client["Lumen GmbH"]
    assert (lumen["client"], lumen["currency"], lumen["total"]) == ("Lumen GmbH", "EUR", "3485.00")
    assert [(ln["description"], ln["amount"]) for ln in lumen["lines"]] == [
        ("Discovery & research - Eve Santos", "510.00"),
        ("Development - Ben Okafor", "2805.00"),
        ("Client meeting - Eve Santos", "170.00"),
    ]
    assert (lumen["tax_total"], lumen["total_with_tax"]) == ("662.15", "4147.15")
    assert lumen["tax_summary"] == [
        {
            "code": "VAT 19%",
            "quickbooks_id": "5",
            "name": "VAT 19%",
            "rate": "19.0000",
            "compound": False,
            "base": "3485.00",
            "tax": "662.15",
        }
    ]
