"""Section 13's terms in the rules file (issue 13): fixed-fee projects and their milestones,
retainers and engagement caps are validated with errors naming their place, written, exported
and read back, and Northwind's file drafts them."""

import datetime as dt
import json
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command

from invoices.models import EngagementCap, FixedFee, Milestone, Retainer, RetainerEntry
from invoices.rulesfile import export_rules, import_rules
from tests.test_rules_file import errors_of

pytestmark = pytest.mark.django_db

HEAD = "firm: {name: F}\ncategories: [{key: dev, name: Dev}]\nclients:\n- name: A\n"


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            "  projects: [{code: A1, name: One, billing: fixed_fee}]\n",
            "clients[0].projects[0]: billing is fixed_fee: give its fixed_fee (fee and milestones)",
        ),
        (
            "  projects: [{code: A1, name: One, fixed_fee: {fee: '10.00'}}]\n",
            "clients[0].projects[0]: has a fixed_fee but billing is hourly, not fixed_fee",
        ),
        (
            "  projects:\n  - {code: A1, name: One, billing: fixed_fee, fixed_fee: {fee: '10.00',"
            " milestones: [{name: M, amount: '1.00', percent: '5'}]}}\n",
            "clients[0].projects[0].fixed_fee.milestones[0]: give an amount or a percent of the "
            "fee (one of the two)",
        ),
        (
            "  projects:\n  - {code: A1, name: One, billing: fixed_fee, fixed_fee: {fee: '10.00',"
            " milestones: [{name: M, percent: '5'}, {name: m, percent: '5'}]}}\n",
            "clients[0].projects[0].fixed_fee: names a milestone twice",
        ),
        (
            "  engagement_caps: [{project: A1, from: '2026-09-01', to: '2027-02-28'}]\n"
            "  projects: [{code: A1, name: One}]\n",
            "clients[0].engagement_caps[0]: give hours or an amount (or both)",
        ),
        (
            "  engagement_caps: [{project: A1, hours: '5', from: '2026-09-01', to: '2026-08-01'}]\n"
            "  projects: [{code: A1, name: One}]\n",
            "clients[0].engagement_caps[0]: ends (2026-08-01) before it starts (2026-09-01)",
        ),
        (
            "  engagement_caps:\n"
            "  - {project: NOPE, hours: '5', from: '2026-09-01', to: '2026-10-01'}\n",
            "clients[0].engagement_caps[0].project: unknown project 'NOPE' (not a project of A)",
        ),
        (
            "  retainer: {monthly_amount: '0'}\n",
            "clients[0].retainer.monthly_amount: input should be greater than 0",
        ),
    ],
)
def test_bad_terms_are_refused_with_their_place(client, expected):
    assert expected in errors_of(HEAD + client)
    assert not FixedFee.objects.exists() and not EngagementCap.objects.exists()


TERMS = HEAD + (
    "  retainer: {monthly_amount: '500.00', rollover: false, opening_balance: '250.00'}\n"
    "  engagement_caps: [{project: A1, hours: '200', amount: '30000.00', from: '2026-09-01',"
    " to: '2027-02-28'}]\n"
    "  projects:\n"
    "  - code: A1\n    name: One\n    billing: fixed_fee\n"
    "    fixed_fee:\n      fee: '8000.00'\n      show_time: false\n      milestones:\n"
    "      - {name: Design, percent: '25', due: '2026-10-31'}\n"
    "      - {name: Build, amount: '6000.00'}\n"
)


def test_terms_are_written_exported_and_read_back_unchanged():
    summary = import_rules(TERMS)
    assert "fixed fees, milestones, retainers and engagement caps: 6 created" in "\n".join(
        summary.lines()
    )
    fee = FixedFee.objects.get()
    assert (fee.project.billing, fee.fee, fee.show_time) == ("fixed_fee", D("8000.00"), False)
    assert list(fee.milestones.values_list("name", "amount", "percent", "due_on")) == [
        ("Design", None, D("25.00"), dt.date(2026, 10, 31)),
        ("Build", D("6000.00"), None, None),
    ]
    retainer = Retainer.objects.get()
    assert (retainer.monthly_amount, retainer.rollover) == (D("500.00"), False)
    assert list(RetainerEntry.objects.values_list("kind", "amount")) == [("top_up", D("250.00"))]
    cap = EngagementCap.objects.get()
    assert (cap.hours, cap.amount, cap.starts_on, cap.ends_on) == (
        D("200.00"),
        D("30000.00"),
        dt.date(2026, 9, 1),
        dt.date(2027, 2, 28),
    )
    exported = export_rules()
    again = import_rules(exported)
    assert (
        "fixed fees, milestones, retainers and engagement caps: 0 created, 0 updated, 5 unchanged"
        in ("\n".join(again.lines()))
    )
    assert export_rules() == exported
    # The opening balance is a top-up written once, never again.
    import_rules(TERMS)
    assert RetainerEntry.objects.count() == 1


def test_a_file_without_the_terms_removes_them_but_keeps_billed_milestones():
    import_rules(TERMS)
    Milestone.objects.filter(name="Design").update(billed_on=None)
    plain = TERMS.split("  retainer:")[0] + "  projects: [{code: A1, name: One}]\n"
    summary = import_rules(plain)
    assert summary.engagements.deleted == 3  # the fixed fee, the retainer, the cap
    assert not FixedFee.objects.exists() and not Retainer.objects.exists()
    assert RetainerEntry.objects.count() == 1  # the ledger stays


def test_northwind_drafts_its_fixed_fee_and_retainer(northwind_dir):
    out = StringIO()
    call_command("import_rules", str(northwind_dir / "rules.yaml"), stdout=out)
    names = ["harvest_detailed_time_2026-10.csv", "clockify_detailed_report_2026-10.csv"]
    names.append("toggl_detailed_2026-10.csv")
    call_command("import_entries", *(str(northwind_dir / n) for n in names), stdout=out)
    call_command("draft_invoices", "--period", "2026-10", stdout=out)
    out = StringIO()
    call_command("export_invoices", "--period", "2026-10", stdout=out)
    invoices = {inv["client"]: inv for inv in json.loads(out.getvalue())["invoices"]}
    umbrella = invoices["Umbrella Health"]["lines"]
    [fee] = [ln for ln in umbrella if ln["kind"] == "fixed_fee"]
    assert (fee["description"], fee["amount"]) == (
        "Patient portal: Discovery and design",
        "6000.00",
    )
    assert not any(ln["kind"] == "time" for ln in umbrella)
    initech = invoices["Initech"]
    drawdown = initech["lines"][-1]
    assert drawdown["kind"] == "drawdown"
    assert drawdown["retainer"]["available"] == "5000.00"


def test_changed_terms_mark_the_clients_drafts_stale():
    from invoices.drafting import Period, draft_invoices

    import_rules(TERMS)
    [draft] = draft_invoices(period=Period.month("2026-10")).invoices  # the Design milestone
    import_rules(TERMS)  # unchanged: the draft stays fresh
    draft.refresh_from_db()
    assert "stale" not in draft.flags
    import_rules(TERMS.replace("fee: '8000.00'", "fee: '9000.00'"))
    draft.refresh_from_db()
    assert "stale" in draft.flags
