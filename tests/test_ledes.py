"""LEDES 1998B export of an approved invoice (issue 13, law firms): the published format, every
figure from the invoice's stored Decimals, descriptions made safe for the format, a validator
that the published sample passes and our output round-trips through, and refusals (a draft, a
missing UTBMS code, no firm tax id) instead of an invalid file.

Real PostgreSQL; the command is run through call_command with its streams captured.
"""

import datetime as dt
import io
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse

from invoices.adjustments import add_manual_line
from invoices.approval import approve_invoice, void_invoice
from invoices.drafting import Period, draft_invoices
from invoices.ledes import FIELDS, LedesRefused, build_ledes, validate_ledes
from invoices.ledes.file import clean_text, timekeeper_class, timekeeper_name
from invoices.models import Cap, Category, Flag, Invoice
from invoices.models.utbms import load_utbms_codes
from tests import billing_fixtures as make

OCTOBER = Period(dt.date(2026, 10, 1), dt.date(2026, 10, 31))
SAMPLE = Path(__file__).parent / "fixtures" / "ledes" / "spec_sample_1998b.txt"
HEADER = (
    "INVOICE_DATE|INVOICE_NUMBER|CLIENT_ID|LAW_FIRM_MATTER_ID|INVOICE_TOTAL|BILLING_START_DATE|"
    "BILLING_END_DATE|INVOICE_DESCRIPTION|LINE_ITEM_NUMBER|EXP/FEE/INV_ADJ_TYPE|"
    "LINE_ITEM_NUMBER_OF_UNITS|LINE_ITEM_ADJUSTMENT_AMOUNT|LINE_ITEM_TOTAL|LINE_ITEM_DATE|"
    "LINE_ITEM_TASK_CODE|LINE_ITEM_EXPENSE_CODE|LINE_ITEM_ACTIVITY_CODE|TIMEKEEPER_ID|"
    "LINE_ITEM_DESCRIPTION|LAW_FIRM_ID|LINE_ITEM_UNIT_COST|TIMEKEEPER_NAME|"
    "TIMEKEEPER_CLASSIFICATION|CLIENT_MATTER_ID[]"
)


def sample_text() -> str:
    return SAMPLE.read_text(encoding="ascii")


def rows_of(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    assert lines[0] == "LEDES1998B[]"
    assert lines[1] == HEADER
    return [dict(zip(FIELDS, line[:-2].split("|"), strict=True)) for line in lines[2:]]


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "pw-root-1234")


@pytest.fixture
def legal(db):
    """Acme Legal requires UTBMS, lines per entry, a 10% discount: Ana (Partner, 300.00) and
    Ben (Associate, 165.00) on "client-meeting" (L120 / A106) and "discovery" (L310 / A103)."""
    load_utbms_codes()
    firm = make.firm()
    firm.name, firm.tax_id = "Northwind Legal", "24-6437381"
    firm.save()
    meeting = make.category("client-meeting")
    meeting.utbms_task_code, meeting.utbms_activity_code = "L120", "A106"
    meeting.save()
    discovery = make.category("discovery")
    discovery.utbms_task_code, discovery.utbms_activity_code = "L310", "A103"
    discovery.save()
    acme = make.client(
        "Acme Legal LLP",
        requires_utbms=True,
        ledes_client_id="ACME-01",
        discount_percent=D("10"),
    )
    project = make.project(acme, "ACME-LIT", "Litigation support")
    ana = make.person("Ana Pereira", "Partner")
    ben = make.person("Ben Okafor", "Associate")
    make.rate("300.00", role="Partner")
    make.rate("165.00", role="Associate")
    make.rule(meeting, task="Meeting")
    make.rule(discovery, task="Discovery")
    make.entry(
        project,
        ana,
        minutes=90,
        task="Meeting",
        notes="Conference with client about the settlement offer",
    )
    make.entry(
        project,
        ben,
        minutes=80,
        task="Discovery",
        day=dt.date(2026, 10, 6),
        notes="Drafted responses to the second set of interrogatories",
    )
    return {"client": acme, "project": project, "ana": ana, "ben": ben, "firm": firm}


def approved(root) -> Invoice:
    [invoice] = draft_invoices(period=OCTOBER).invoices
    return approve_invoice(invoice=invoice, user=root)


# --- The validator --------------------------------------------------------------------------


def test_validator_accepts_the_published_sample():
    assert validate_ledes(sample_text()) == []


def _sample_with(line: int, field: str, value: str) -> str:
    lines = sample_text().splitlines()
    values = lines[line][:-2].split("|")
    values[FIELDS.index(field)] = value
    lines[line] = "|".join(values) + "[]"
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("LEDES98B[]\n", "line 1: must be 'LEDES1998B[]'"),
        (
            "LEDES1998B[]\nINVOICE_DATE|INVOICE_NUMBER[]\n",
            "line 2: must be the 24 LEDES 1998B field names, separated by '|', ending '[]'",
        ),
        (f"LEDES1998B[]\n{HEADER}\n", "the file has no line items"),
        (
            f"LEDES1998B[]\n{HEADER}\n19990225|96542|00711[]\n",
            "line 3: has 3 fields, LEDES 1998B has 24",
        ),
        (
            sample_text().replace("|423-987[]", "|423-987", 1),
            "line 3: does not end with '[]'",
        ),
        (
            _sample_with(2, "INVOICE_DATE", "1999-02-25"),
            "line 3: INVOICE_DATE '1999-02-25' is not a YYYYMMDD date",
        ),
        (
            _sample_with(2, "LINE_ITEM_DATE", "19990231"),
            "line 3: LINE_ITEM_DATE '19990231' is not a YYYYMMDD date",
        ),
        (_sample_with(2, "LAW_FIRM_ID", ""), "line 3: LAW_FIRM_ID is required"),
        (_sample_with(2, "TIMEKEEPER_ID", ""), "line 3: TIMEKEEPER_ID is required"),
        (
            _sample_with(2, "EXP/FEE/INV_ADJ_TYPE", "X"),
            "line 3: EXP/FEE/INV_ADJ_TYPE 'X' is none of F, E, IF, IE",
        ),
        (
            _sample_with(2, "LINE_ITEM_UNIT_COST", "3,50"),
            "line 3: LINE_ITEM_UNIT_COST '3,50' is not a number",
        ),
        (
            _sample_with(2, "INVOICE_NUMBER", "X" * 21),
            f"line 3: INVOICE_NUMBER '{'X' * 21}' is longer than 20 characters",
        ),
        (
            _sample_with(2, "TIMEKEEPER_CLASSIFICATION", "Partner"),
            "line 3: TIMEKEEPER_CLASSIFICATION 'Partner' is none of AS, LA, OC, OT, PT",
        ),
        (
            _sample_with(3, "LINE_ITEM_NUMBER", "1"),
            "line 4: LINE_ITEM_NUMBER 1 is used twice",
        ),
        (
            _sample_with(2, "LINE_ITEM_DESCRIPTION", "Research f\u00e9es"),
            "line 3: has characters that are not ASCII",
        ),
    ],
)
def test_validator_names_each_problem(text, problem):
    assert problem in validate_ledes(text)


def test_validator_checks_each_lines_arithmetic_and_the_invoice_total():
    # 2.00 x 350 - 70 is 630; a total of 640 no longer adds up, nor does the invoice's.
    problems = validate_ledes(_sample_with(2, "LINE_ITEM_TOTAL", "640"))
    assert problems == [
        "line 3: LINE_ITEM_TOTAL 640 is not units x unit cost + adjustment (2.00 x 350 + -70)",
        "invoice 96542: INVOICE_TOTAL 2934.45 is not the sum of its LINE_ITEM_TOTALs (2944.45)",
    ]
    adjustment = validate_ledes(_sample_with(7, "LINE_ITEM_ADJUSTMENT_AMOUNT", "1000"))
    assert adjustment == [
        "line 8: an invoice-level adjustment's LINE_ITEM_TOTAL 1250 differs from its "
        "LINE_ITEM_ADJUSTMENT_AMOUNT 1000"
    ]


# --- Writing --------------------------------------------------------------------------------


def test_export_writes_the_published_format_from_the_stored_figures(legal, root):
    invoice = approved(root)
    text = build_ledes(invoice=invoice)

    assert text.endswith("[]\n")
    rows = rows_of(text)
    common = {
        "INVOICE_DATE": f"{invoice.issue_date:%Y%m%d}",
        "INVOICE_NUMBER": invoice.number,
        "CLIENT_ID": "ACME-01",
        "LAW_FIRM_MATTER_ID": "ACME-LIT",
        "INVOICE_TOTAL": "602.99",
        "BILLING_START_DATE": "20261001",
        "BILLING_END_DATE": "20261031",
        "INVOICE_DESCRIPTION": "Services 2026-10-01 to 2026-10-31",
        "LAW_FIRM_ID": "24-6437381",
        "CLIENT_MATTER_ID": "",
    }
    ana, ben = legal["ana"], legal["ben"]
    assert rows == [
        {
            **common,
            "LINE_ITEM_NUMBER": "1",
            "EXP/FEE/INV_ADJ_TYPE": "F",
            "LINE_ITEM_NUMBER_OF_UNITS": "1.5000",
            "LINE_ITEM_ADJUSTMENT_AMOUNT": "0",
            "LINE_ITEM_TOTAL": "450.00",
            "LINE_ITEM_DATE": "20261005",
            "LINE_ITEM_TASK_CODE": "L120",
            "LINE_ITEM_EXPENSE_CODE": "",
            "LINE_ITEM_ACTIVITY_CODE": "A106",
            "TIMEKEEPER_ID": str(ana.pk),
            "LINE_ITEM_DESCRIPTION": invoice.lines.get(position=1).description,
            "LINE_ITEM_UNIT_COST": "300.00",
            "TIMEKEEPER_NAME": "Pereira, Ana",
            "TIMEKEEPER_CLASSIFICATION": "PT",
        },
        {
            **common,
            "LINE_ITEM_NUMBER": "2",
            "EXP/FEE/INV_ADJ_TYPE": "F",
            # 80 minutes are 1.3333 h as stored; 1.3333 x 165.00 = 219.9945, billed 219.99:
            # the adjustment makes units x cost the stored amount, exactly.
            "LINE_ITEM_NUMBER_OF_UNITS": "1.3333",
            "LINE_ITEM_ADJUSTMENT_AMOUNT": "-0.0045",
            "LINE_ITEM_TOTAL": "219.99",
            "LINE_ITEM_DATE": "20261006",
            "LINE_ITEM_TASK_CODE": "L310",
            "LINE_ITEM_EXPENSE_CODE": "",
            "LINE_ITEM_ACTIVITY_CODE": "A103",
            "TIMEKEEPER_ID": str(ben.pk),
            "LINE_ITEM_DESCRIPTION": invoice.lines.get(position=2).description,
            "LINE_ITEM_UNIT_COST": "165.00",
            "TIMEKEEPER_NAME": "Okafor, Ben",
            "TIMEKEEPER_CLASSIFICATION": "AS",
        },
        {
            **common,
            "LINE_ITEM_NUMBER": "3",
            "EXP/FEE/INV_ADJ_TYPE": "IF",
            "LINE_ITEM_NUMBER_OF_UNITS": "1",
            # 10% of 669.99
            "LINE_ITEM_ADJUSTMENT_AMOUNT": "-67.00",
            "LINE_ITEM_TOTAL": "-67.00",
            "LINE_ITEM_DATE": "20261031",
            "LINE_ITEM_TASK_CODE": "",
            "LINE_ITEM_EXPENSE_CODE": "",
            "LINE_ITEM_ACTIVITY_CODE": "",
            "TIMEKEEPER_ID": "",
            "LINE_ITEM_DESCRIPTION": "Discount (10%)",
            "LINE_ITEM_UNIT_COST": "",
            "TIMEKEEPER_NAME": "",
            "TIMEKEEPER_CLASSIFICATION": "",
        },
    ]


def test_an_approved_invoice_keeps_the_codes_it_was_approved_with(legal, root):
    """Approval freezes what the client is billed, its UTBMS codes included: the category's
    defaults are kept with each line when drafted, so editing the category afterwards (for
    next month's invoices) leaves this invoice's LEDES file as approved."""
    invoice = approved(root)
    before = [
        (r["LINE_ITEM_TASK_CODE"], r["LINE_ITEM_ACTIVITY_CODE"])
        for r in rows_of(build_ledes(invoice=invoice))
    ]
    assert ("L120", "A106") in before
    meeting = Category.objects.get(key="client-meeting")
    meeting.utbms_task_code, meeting.utbms_activity_code = "L110", "A101"
    meeting.save()

    after = [
        (r["LINE_ITEM_TASK_CODE"], r["LINE_ITEM_ACTIVITY_CODE"])
        for r in rows_of(build_ledes(invoice=invoice))
    ]
    assert after == before


def test_editing_a_category_marks_the_open_drafts_stale(legal, root):
    """A category's codes, name and billable flag are billed through every draft: changing one
    marks the drafts stale in the same transaction, so none is approved as it was drafted
    before the change (as a rate or a policy change does)."""
    [draft] = draft_invoices(period=OCTOBER).invoices
    meeting = Category.objects.get(key="client-meeting")
    meeting.utbms_task_code = "L110"
    meeting.save()

    draft.refresh_from_db()
    assert Flag.STALE in draft.flags
    assert draft.events.filter(action="flagged stale", detail__reason="a category changed")


def test_line_totals_add_up_to_the_stored_invoice_total_and_round_trip(legal, root):
    draft = add_manual_line(
        client=legal["client"],
        period=OCTOBER,
        user=root,
        kind="expense",
        description="Deposition transcript",
        quantity=D("1"),
        unit_price=D("120.50"),
        reason="court reporter's invoice",
        billing_code="E115",
    )
    assert draft is not None
    invoice = approve_invoice(invoice=Invoice.objects.get(pk=draft.pk), user=root)
    text = build_ledes(invoice=invoice)

    assert validate_ledes(text) == []
    rows = rows_of(text)
    assert sum(D(r["LINE_ITEM_TOTAL"]) for r in rows) == invoice.total
    assert {r["INVOICE_TOTAL"] for r in rows} == {str(invoice.total)}
    [expense] = [r for r in rows if r["EXP/FEE/INV_ADJ_TYPE"] == "E"]
    assert (expense["LINE_ITEM_EXPENSE_CODE"], expense["LINE_ITEM_TOTAL"]) == ("E115", "120.50")
    assert [r["EXP/FEE/INV_ADJ_TYPE"] for r in rows] == ["F", "F", "E", "IF"]


def test_a_cap_and_the_discount_are_invoice_level_adjustments(legal, root):
    Cap.objects.create(client=legal["client"], project=legal["project"], amount=D("500.00"))
    invoice = approved(root)
    text = build_ledes(invoice=invoice)

    assert validate_ledes(text) == []
    adjustments = [
        (r["EXP/FEE/INV_ADJ_TYPE"], r["LINE_ITEM_ADJUSTMENT_AMOUNT"], r["LINE_ITEM_TOTAL"])
        for r in rows_of(text)
        if r["EXP/FEE/INV_ADJ_TYPE"] != "F"
    ]
    # 669.99 of time capped at 500.00, then 10% off: 500.00 - 50.00 = 450.00.
    assert adjustments == [("IF", "-169.99", "-169.99"), ("IF", "-50.00", "-50.00")]
    assert invoice.total == D("450.00")
    assert {r["INVOICE_TOTAL"] for r in rows_of(text)} == {"450.00"}


def test_descriptions_lose_pipes_brackets_line_breaks_and_accents(legal, root):
    project = legal["project"]
    make.entry(
        project,
        legal["ana"],
        minutes=30,
        task="Meeting",
        day=dt.date(2026, 10, 7),
        notes="Call with Zo\u00eb | re: [draft]\nsettlement [] terms",
    )
    text = build_ledes(invoice=approved(root))

    assert validate_ledes(text) == []
    descriptions = [r["LINE_ITEM_DESCRIPTION"] for r in rows_of(text)]
    [call] = [d for d in descriptions if "Zoe" in d]
    assert "|" not in call and "[" not in call and "]" not in call and "\n" not in call
    assert clean_text("Call with Zo\u00eb | re: [draft]\nsettlement [] terms") == (
        "Call with Zoe / re: (draft) settlement () terms"
    )


@pytest.mark.parametrize(
    ("name", "role", "shown", "klass"),
    [
        ("Ana Pereira", "Partner", "Pereira, Ana", "PT"),
        ("Ben Okafor", "Senior Associate", "Okafor, Ben", "AS"),
        ("Cleo Marsh", "Of Counsel", "Marsh, Cleo", "OC"),
        ("Dara Quinn", "Paralegal", "Quinn, Dara", "LA"),
        ("Eve", "Consultant", "Eve", "OT"),
    ],
)
def test_timekeeper_name_and_classification(name, role, shown, klass):
    assert (timekeeper_name(name), timekeeper_class(role)) == (shown, klass)


# --- Refusals -------------------------------------------------------------------------------


def test_a_draft_or_void_invoice_is_refused(legal, root):
    [draft] = draft_invoices(period=OCTOBER).invoices
    with pytest.raises(LedesRefused, match=r"is draft: only an approved invoice"):
        build_ledes(invoice=draft)
    invoice = approve_invoice(invoice=draft, user=root)
    voided = void_invoice(invoice=invoice, user=root, reason="wrong client")
    with pytest.raises(LedesRefused, match=r"is void: only an approved invoice"):
        build_ledes(invoice=voided)


def test_a_missing_utbms_code_refuses_the_export_naming_the_line(legal, root):
    assert legal["client"].policy.requires_utbms
    discovery = Category.objects.get(key="discovery")
    discovery.utbms_activity_code = (
        ""  # before drafting: a line keeps the codes it was drafted with
    )
    discovery.save()
    invoice = approved(root)
    line = invoice.lines.get(position=2)

    with pytest.raises(LedesRefused) as refused:
        build_ledes(invoice=invoice)
    assert str(refused.value) == (
        f"invoice {invoice.number} is not exported as LEDES: line 2 ({line.description[:60]}, "
        "Ben Okafor): no UTBMS activity code, which this client requires; set it on category "
        "'Discovery' or in the entry's billing code (e.g. A104)"
    )


def test_a_firm_without_tax_id_is_refused(legal, root):
    invoice = approved(root)
    legal["firm"].tax_id = ""
    legal["firm"].save()
    with pytest.raises(LedesRefused, match=r"the firm has no tax ID"):
        build_ledes(invoice=invoice)


def test_a_line_of_several_timekeepers_is_refused(legal, root):
    policy = legal["client"].policy
    policy.group_lines_by = "category"
    policy.save()
    make.entry(
        legal["project"],
        legal["ben"],
        minutes=30,
        task="Meeting",
        day=dt.date(2026, 10, 8),
        notes="Conference with client about the mediation schedule",
    )
    with pytest.raises(LedesRefused, match=r"a LEDES fee line names one timekeeper"):
        build_ledes(invoice=approved(root))


# --- The command and the admin --------------------------------------------------------------


def test_command_writes_the_file_to_stdout_and_nothing_else(legal, root):
    make.entry(
        legal["project"],
        legal["ana"],
        minutes=30,
        task="Meeting",
        day=dt.date(2026, 10, 9),
        notes="work on file",
    )
    invoice = approved(root)
    out, err = io.StringIO(), io.StringIO()
    call_command("export_ledes", invoice.number, stdout=out, stderr=err)

    assert out.getvalue() == build_ledes(invoice=invoice)
    assert validate_ledes(out.getvalue()) == []
    assert "warning: entry 2026-10-09 Ana Pereira ('work on file')" in err.getvalue()


def test_command_writes_the_file_named_by_o(legal, root, tmp_path):
    invoice = approved(root)
    target = tmp_path / "invoice.txt"
    out = io.StringIO()
    call_command("export_ledes", invoice.number, "-o", str(target), stdout=out)

    assert out.getvalue() == ""
    assert target.read_text(encoding="ascii") == build_ledes(invoice=invoice)


def test_command_refuses_an_unknown_number_and_a_draft(legal):
    draft_invoices(period=OCTOBER)
    with pytest.raises(CommandError, match=r"no invoice is numbered 'INV-1999-0001'"):
        call_command("export_ledes", "INV-1999-0001", stdout=io.StringIO())


def test_admin_download_and_presend_section(client, legal, root):
    invoice = approved(root)
    client.force_login(root)
    page = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    html = page.content.decode()
    assert 'id="presend-checks"' in html
    assert 'id="ledes-download"' in html

    response = client.get(reverse("admin:invoices_invoice_ledes", args=[invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="{invoice.number}.ledes1998b.txt"'
    )
    assert response.content.decode("ascii") == build_ledes(invoice=invoice)


def test_admin_download_of_a_draft_is_refused_with_a_message(client, legal, root):
    [draft] = draft_invoices(period=OCTOBER).invoices
    client.force_login(root)
    response = client.get(reverse("admin:invoices_invoice_ledes", args=[draft.pk]), follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert any("only an approved invoice" in m for m in messages)


def test_admin_action_downloads_one_approved_invoice(client, legal, root):
    invoice = approved(root)
    client.force_login(root)
    response = client.post(
        reverse("admin:invoices_invoice_changelist"),
        {"action": "download_ledes", "_selected_action": [invoice.pk]},
    )
    assert response.status_code == 200
    assert response.content.decode("ascii") == build_ledes(invoice=invoice)
