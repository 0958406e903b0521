"""UTBMS codes (issue 13, law firms): the published code sets as data, a category's default
task and activity codes checked against them (admin and rules file), a line's codes (its billing
code first), and the pre-send checks: missing codes where the client requires them, block
billing and vague narratives, each finding naming its line or entry.

Real PostgreSQL; the code set is (re)loaded by `load_utbms_codes`, which the data migration
also runs (a transactional test elsewhere may have flushed the table).
"""

import datetime as dt
import io

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from invoices.drafting import Period, draft_invoices
from invoices.ledes import CodeSet, line_codes, presend_checks
from invoices.ledes.checks import MIN_NARRATIVE_WORDS, block_billed_tasks, vague_reason
from invoices.models import Category, InvoiceLine, UtbmsCode
from invoices.models.utbms import load_utbms_codes, published_codes
from invoices.rulesfile import RulesFileInvalid, export_rules, import_rules
from tests import billing_fixtures as make

OCTOBER = Period(dt.date(2026, 10, 1), dt.date(2026, 10, 31))


@pytest.fixture
def codes(db):
    load_utbms_codes()
    return CodeSet.load()


# --- The code sets --------------------------------------------------------------------------


def test_the_published_sets_are_loaded_with_their_names(codes):
    counts = {kind: UtbmsCode.objects.filter(kind=kind).count() for kind in UtbmsCode.Kind.values}
    # Litigation 34 + bankruptcy 25 + counseling 4 task and phase codes; A101-A111; E101-E124.
    assert counts == {"task": 63, "activity": 11, "expense": 24}
    assert str(UtbmsCode.objects.get(code="L110")) == "L110 Fact Investigation/Development"
    assert UtbmsCode.objects.get(code="L110").phase == "L100"
    assert str(UtbmsCode.objects.get(code="A101")) == "A101 Plan and prepare for"
    assert str(UtbmsCode.objects.get(code="E124")) == "E124 Other"
    assert [c.code for c in published_codes() if c.code_set == "expenses"] == [
        f"E{n}" for n in range(101, 125)
    ]


def test_loading_again_adds_nothing_and_restores_a_changed_name(codes):
    UtbmsCode.objects.filter(code="L120").update(name="edited")
    out = io.StringIO()
    call_command("load_utbms", stdout=out)
    assert "0 added, 1 updated" in out.getvalue()
    assert UtbmsCode.objects.get(code="L120").name == "Analysis/Strategy"


# --- A category's codes ---------------------------------------------------------------------


def test_a_category_code_not_in_the_set_is_refused_by_name(codes):
    category = Category(key="x", name="X", utbms_task_code="L999", utbms_activity_code="L120")
    with pytest.raises(ValidationError) as refused:
        category.full_clean()
    assert refused.value.message_dict == {
        "utbms_task_code": [
            "'L999' is not a UTBMS task code (e.g. L120; the code sets are listed under "
            "UTBMS codes)"
        ],
        "utbms_activity_code": [
            "'L120' is not a UTBMS activity code (e.g. A104; the code sets are listed under "
            "UTBMS codes)"
        ],
    }
    Category(key="y", name="Y", utbms_task_code="L120", utbms_activity_code="A104").full_clean()


def test_the_admin_refuses_a_bad_code_naming_it(client, codes):
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-1234")
    client.force_login(root)
    response = client.post(
        reverse("admin:invoices_category_add"),
        {"key": "meeting", "name": "Meeting", "billable": "on", "utbms_task_code": "L121"},
    )
    assert response.status_code == 200
    assert "&#x27;L121&#x27; is not a UTBMS task code" in response.content.decode()
    assert not Category.objects.filter(key="meeting").exists()


RULES = """
firm: {{name: Northwind Legal}}
categories:
  - {{key: meeting, name: Client meeting, utbms_task_code: {task}, utbms_activity_code: {activity}}}
clients:
  - {{name: Acme Legal LLP, requires_utbms: true, ledes_client_id: ACME-01}}
"""


def test_the_rules_file_refuses_a_code_not_in_the_set(codes):
    with pytest.raises(RulesFileInvalid) as refused:
        import_rules(RULES.format(task="L120", activity="A199"))
    assert [(e.path, e.message) for e in refused.value.errors] == [
        (
            "categories[0].utbms_activity_code",
            "'A199' is not a UTBMS activity code (e.g. A104; the code sets are in "
            "invoices/data/utbms)",
        )
    ]
    assert not Category.objects.exists()


def test_the_rules_file_round_trips_the_codes_and_the_requirement(codes):
    import_rules(RULES.format(task="L120", activity="A106"))
    meeting = Category.objects.get(key="meeting")
    assert (meeting.utbms_task_code, meeting.utbms_activity_code) == ("L120", "A106")
    exported = export_rules()
    assert "utbms_task_code: L120" in exported
    assert "utbms_activity_code: A106" in exported
    assert "requires_utbms: true" in exported
    assert "ledes_client_id: ACME-01" in exported


# --- A line's codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("billing_code", "expected"),
    [
        ("", ("L120", "A104", "")),  # the category's defaults
        ("L330", ("L330", "A104", "")),  # a task code overrides the task only
        ("L330/A103", ("L330", "A103", "")),  # both, from the entry's billing code
        ("l330 a103", ("L330", "A103", "")),
        ("X100", ("L120", "A104", "")),  # a free-text code is no UTBMS code
        ("E115", ("L120", "A104", "E115")),
    ],
)
def test_a_lines_codes_come_from_its_billing_code_then_its_category(codes, billing_code, expected):
    category = Category(key="k", name="K", utbms_task_code="L120", utbms_activity_code="A104")
    line = InvoiceLine(billing_code=billing_code, category=category)
    found = line_codes(line, codes)
    assert (found.task, found.activity, found.expense) == expected


# --- Pre-send checks ------------------------------------------------------------------------


@pytest.fixture
def legal(codes):
    make.firm()
    meeting = make.category("client-meeting")
    meeting.utbms_task_code, meeting.utbms_activity_code = "L120", "A106"
    meeting.save()
    research = make.category("research")  # no UTBMS codes
    acme = make.client("Acme Legal LLP", requires_utbms=True)
    project = make.project(acme, "ACME-LIT")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("300.00", role="Partner")
    make.rule(meeting, task="Meeting")
    make.rule(research, task="Research")
    return {"client": acme, "project": project, "ana": ana}


def _findings(legal):
    [invoice] = draft_invoices(period=OCTOBER).invoices
    return invoice, [
        (f.check, f.subject, f.message, f.blocks_export) for f in presend_checks(invoice=invoice)
    ]


def test_a_billed_line_without_codes_is_flagged_with_what_to_do(legal):
    make.entry(
        legal["project"],
        legal["ana"],
        task="Research",
        notes="Researched case law on the limitation period for the appeal",
    )
    invoice, findings = _findings(legal)
    line = invoice.lines.get()
    subject = f"line 1 ({line.description[:60]}, Ana Pereira)"
    where = "set it on category 'Research' or in the entry's billing code"
    assert findings == [
        (
            "utbms",
            subject,
            f"no UTBMS task code, which this client requires; {where} (e.g. L120)",
            True,
        ),
        (
            "utbms",
            subject,
            f"no UTBMS activity code, which this client requires; {where} (e.g. A104)",
            True,
        ),
    ]


def test_a_client_that_does_not_require_utbms_has_no_checks(legal):
    policy = legal["client"].policy
    policy.requires_utbms = False
    policy.save()
    make.entry(legal["project"], legal["ana"], task="Research", notes="review")
    assert _findings(legal)[1] == []


def test_block_billing_and_vague_narratives_name_the_entry(legal):
    make.entry(
        legal["project"],
        legal["ana"],
        task="Meeting",
        notes="Reviewed the contract; drafted memo to client and called opposing counsel",
    )
    make.entry(
        legal["project"],
        legal["ana"],
        task="Meeting",
        notes="work on file",
        day=dt.date(2026, 10, 6),
    )
    _, findings = _findings(legal)
    assert findings == [
        (
            "block_billing",
            "entry 2026-10-05 Ana Pereira ('Reviewed the contract; drafted memo to client and "
            "called opp')",
            "describes 3 tasks in one entry (Reviewed the contract; drafted memo to client; "
            "called opposing counsel); split it into one entry per task with its own time",
            False,
        ),
        (
            "vague",
            "entry 2026-10-06 Ana Pereira ('work on file')",
            "the narrative 'work on file' is too vague; say what was done, on what, and why",
            False,
        ),
    ]


@pytest.mark.parametrize(
    ("text", "tasks"),
    [
        ("Review contract; draft memo to client", 2),
        ("Reviewed discovery responses and prepared deposition outline", 2),
        ("Meeting with Ana and Ben about the settlement", 1),
        ("Drafted the motion to dismiss and the supporting brief", 1),
        ("Telephone call with client & email to opposing counsel", 2),
        ("Preparing exhibits then attending the hearing", 2),
        ("Settlement strategy", 0),
    ],
)
def test_block_billing_heuristic(text, tasks):
    assert len(block_billed_tasks(text)) == tasks


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Attention to matter", "the narrative 'Attention to matter' is too vague"),
        ("review.", "the narrative 'review.' is too vague"),
        ("Client call", f"the narrative has 2 words (fewer than {MIN_NARRATIVE_WORDS})"),
        ("Drafted the motion to dismiss", ""),
    ],
)
def test_vague_narratives(text, reason):
    assert vague_reason(text) == reason


def test_the_review_page_shows_the_checks(client, legal):
    make.entry(legal["project"], legal["ana"], task="Meeting", notes="work on file")
    [invoice] = draft_invoices(period=OCTOBER).invoices
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-1234")
    client.force_login(root)
    html = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).content.decode()
    assert 'id="presend-checks"' in html
    assert "the narrative &#x27;work on file&#x27; is too vague" in html
    assert 'id="ledes-download"' not in html  # a draft has no LEDES file yet


def test_the_rules_file_refuses_a_code_of_the_wrong_shape(codes):
    with pytest.raises(RulesFileInvalid) as refused:
        import_rules(RULES.format(task="l120", activity="A106"))
    assert [(e.path, e.message) for e in refused.value.errors] == [
        (
            "categories[0].utbms_task_code",
            "'l120' is not a UTBMS code: a capital letter and three digits, e.g. L120",
        )
    ]
