"""Importing a rules file upserts by natural keys (issue 10, defect 7), and the rules file's
hostile-input edges (issue 14, item 4). Real PostgreSQL; the audit trail is counted from the
pghistory event tables the triggers write.
"""

import datetime as dt
import io
import time
from decimal import Decimal as D

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from pghistory.models import Event

from invoices.admin.configuration import ClassificationRuleForm
from invoices.configuration import load_policies
from invoices.drafting import Period, draft_invoices
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    Classification,
    ClassificationRule,
    ClientPolicy,
    InvoiceLine,
    Rate,
    RateMultiplier,
)
from invoices.rulesfile import RulesFileInvalid, export_rules, import_rules, load_rules
from tests import billing_fixtures as make
from timesheets.models import Client, Person, Project

pytestmark = pytest.mark.django_db

CONFIGURATION = (ClassificationRule, Rate, BillingCode, RateMultiplier, Cap, Category)


@pytest.fixture
def northwind_text(northwind_dir):
    return (northwind_dir / "rules.yaml").read_text(encoding="utf-8")


def audit_rows() -> int:
    """Every row of every audit-trail table, whichever models are tracked."""
    return sum(
        model.objects.count()
        for model in apps.get_models()
        if issubclass(model, Event) and not model._meta.proxy
    )


def ids() -> dict[str, list[int]]:
    return {
        model.__name__: sorted(model.objects.values_list("pk", flat=True))
        for model in (*CONFIGURATION, ClientPolicy, Client, Project, Person)
    }


def run_command(*args: str) -> tuple[str, str, CommandError | None]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


def admin_rule() -> ClassificationRule:
    """A rule made in the admin for a client the file lists."""
    return ClassificationRule.objects.create(
        client=Client.objects.get(name="Acme Legal LLP"),
        priority=5,
        task="Design review",
        category=Category.objects.get(key="design"),
    )


# --- upsert by natural keys ----------------------------------------------------------------


def test_importing_the_same_file_twice_changes_no_ids_and_writes_no_audit_rows(northwind_text):
    import_rules(northwind_text)
    before_ids, before_audit = ids(), audit_rows()

    summary = import_rules(northwind_text)

    assert ids() == before_ids
    assert audit_rows() == before_audit
    for tally in (
        summary.categories,
        summary.policies,
        summary.rules,
        summary.rates,
        summary.billing_codes,
        summary.rate_multipliers,
        summary.caps,
    ):
        assert (tally.created, tally.updated, tally.deleted) == (0, 0, 0)
    assert (summary.rules.unchanged, summary.rates.unchanged) == (5, 9)
    assert (summary.billing_codes.unchanged, summary.caps.unchanged) == (4, 1)


def test_a_changed_rate_is_updated_in_place(northwind_text):
    import_rules(northwind_text)
    partner = Rate.objects.get(client__isnull=True, role="Partner")
    untouched = Rate.objects.get(client__isnull=True, role="Consultant")
    before_audit = audit_rows()

    summary = import_rules(
        northwind_text.replace(
            "- role: Partner\n  rate: '325.00'", "- role: Partner\n  rate: '335.00'"
        )
    )

    assert Rate.objects.get(pk=partner.pk).rate == D("335.00")
    assert Rate.objects.get(pk=untouched.pk).rate == D("165.00")
    assert (summary.rates.created, summary.rates.updated, summary.rates.unchanged) == (0, 1, 8)
    assert summary.rates.deleted == 0
    assert audit_rows() == before_audit + 1  # one update event, for the one changed row


def test_a_rate_ended_and_a_new_one_started_in_one_import(northwind_text):
    import_rules(northwind_text)
    partner = Rate.objects.get(client__isnull=True, role="Partner")
    edited = northwind_text.replace(
        "- role: Partner\n  rate: '325.00'\n",
        "- role: Partner\n  rate: '325.00'\n  to: 2026-12-31\n"
        "- role: Partner\n  rate: '350.00'\n  from: 2027-01-01\n",
    )

    summary = import_rules(edited)

    kept = Rate.objects.get(pk=partner.pk)
    assert (kept.rate, kept.valid_from, kept.valid_to) == (D("325.00"), None, dt.date(2026, 12, 31))
    new = Rate.objects.get(client__isnull=True, role="Partner", valid_from=dt.date(2027, 1, 1))
    assert new.rate == D("350.00")
    assert (summary.rates.created, summary.rates.updated) == (1, 1)


def test_an_admin_added_rule_survives_an_import_and_is_named(northwind_text):
    import_rules(northwind_text)
    rule = admin_rule()
    code = BillingCode.objects.create(
        client=rule.client, category=Category.objects.get(key="design"), code="L300"
    )

    summary = import_rules(northwind_text)

    assert ClassificationRule.objects.filter(pk=rule.pk).exists()
    assert BillingCode.objects.filter(pk=code.pk).exists()
    assert summary.rules.deleted == 0
    lines = summary.lines()
    assert (
        f"classification rules not in the file, kept (--prune deletes them): rule #{rule.pk} "
        "(Acme Legal LLP: task 'Design review', priority 5 -> design)"
    ) in lines
    assert (
        "billing codes not in the file, kept (--prune deletes them): Acme Legal LLP: design L300"
    ) in lines


def test_prune_deletes_what_the_file_does_not_list(northwind_text):
    import_rules(northwind_text)
    rule = admin_rule()
    extra = Category.objects.create(key="pro-bono", name="Pro bono")

    summary = import_rules(northwind_text, prune=True)

    assert not ClassificationRule.objects.filter(pk=rule.pk).exists()
    assert not Category.objects.filter(pk=extra.pk).exists()
    assert (summary.rules.deleted, summary.rules.unchanged) == (1, 5)
    assert summary.categories.deleted == 1
    assert (
        f"classification rules not in the file, deleted: rule #{rule.pk} "
        "(Acme Legal LLP: task 'Design review', priority 5 -> design)"
    ) in summary.lines()


def test_import_command_reports_unchanged_and_prunes_only_when_asked(northwind_dir):
    path = str(northwind_dir / "rules.yaml")
    run_command("import_rules", path)
    rule = admin_rule()

    out, err, failure = run_command("import_rules", path)

    assert (err, failure) == ("", None)
    assert "classification rules: 0 created, 0 updated, 5 unchanged, 0 deleted" in out
    assert "rates: 0 created, 0 updated, 9 unchanged, 0 deleted" in out
    assert f"not in the file, kept (--prune deletes them): rule #{rule.pk}" in out
    assert ClassificationRule.objects.filter(pk=rule.pk).exists()

    out, _, failure = run_command("import_rules", path, "--prune")

    assert failure is None
    assert "classification rules: 0 created, 0 updated, 5 unchanged, 1 deleted" in out
    assert not ClassificationRule.objects.filter(pk=rule.pk).exists()


def test_a_kept_rate_that_the_file_would_overlap_is_refused_and_changes_nothing(
    northwind_text,
):
    import_rules(northwind_text)
    Rate.objects.filter(client__isnull=True, role="Partner").update(valid_to=dt.date(2026, 12, 31))
    added = Rate.objects.create(role="Partner", rate=D("350.00"), valid_from=dt.date(2027, 1, 1))
    before_ids, before_audit = ids(), audit_rows()

    with pytest.raises(RulesFileInvalid) as caught:
        import_rules(northwind_text)  # the file's Partner row is open-ended again

    assert [str(e) for e in caught.value.errors] == [
        f"rates[0]: overlaps rate #{added.pk} (role Partner, 2027-01-01..open), which the file "
        "does not list; list it in the file, or end this row before it, or import with --prune"
    ]
    assert (ids(), audit_rows()) == (before_ids, before_audit)


def test_rules_of_equal_priority_are_tried_in_the_order_of_the_file(northwind_text):
    import_rules(northwind_text)
    first = ClassificationRule.objects.get(priority=20)
    # A new rule placed before an existing one of the same priority.
    edited = northwind_text.replace(
        "- priority: 20\n",
        "- priority: 20\n  notes_regex: (?i)retro\n  category: internal-meeting\n- priority: 20\n",
    )

    summary = import_rules(edited)

    same = list(ClassificationRule.objects.filter(priority=20).order_by("id"))
    assert [r.notes_regex for r in same] == [
        "(?i)retro",
        r"(?i)\b(stand-?up|all[- ]hands|1:1|internal sync|team meeting)\b",
    ]
    assert not ClassificationRule.objects.filter(pk=first.pk).exists()  # re-created after it
    assert ClassificationRule.objects.filter(priority=30).count() == 1
    assert (summary.rules.created, summary.rules.deleted, summary.rules.unchanged) == (2, 1, 4)
    assert (
        "classification rules re-created so that rules of equal priority are tried in the order "
        f"of the file: rule #{first.pk} (firm-wide: notes_regex "
        r"'(?i)\b(stand-?up|all[- ]hands|1:1|internal sync|team meeting)\b', priority 20 "
        "-> internal-meeting)"
    ) in summary.lines()


def test_changed_codes_multipliers_caps_and_priorities_are_updated_in_place(northwind_text):
    import_rules(northwind_text)
    before = ids()
    travel_rule = ClassificationRule.objects.get(task="Travel")
    edited = (
        northwind_text.replace("    travel: '0.5'\n", "    travel: '0.75'\n")
        .replace("    amount: '12000.00'\n", "    amount: '15000.00'\n")
        .replace("    travel: X100\n", "    travel: X200\n")
        .replace("- priority: 10\n  task: Travel\n", "- priority: 11\n  task: travel\n")
    )

    summary = import_rules(edited)

    assert ids() == before
    assert RateMultiplier.objects.get().factor == D("0.75")
    assert Cap.objects.get().amount == D("15000.00")
    assert BillingCode.objects.get(category__key="travel").code == "X200"
    rule = ClassificationRule.objects.get(pk=travel_rule.pk)
    assert (rule.priority, rule.task) == (11, "travel")
    for tally in (summary.rate_multipliers, summary.caps, summary.billing_codes, summary.rules):
        assert (tally.created, tally.updated, tally.deleted) == (0, 1, 0)


def test_dry_run_with_prune_names_what_it_would_delete_and_deletes_nothing(northwind_text):
    import_rules(northwind_text)
    rule = admin_rule()
    before_ids, before_audit = ids(), audit_rows()

    summary = import_rules(northwind_text, prune=True, dry_run=True)

    assert summary.rules.deleted == 1
    assert summary.lines()[-2].startswith(
        f"classification rules not in the file, deleted: rule #{rule.pk} "
    )
    assert summary.lines()[-1] == "dry run: the file is valid; nothing was saved"
    assert (ids(), audit_rows()) == (before_ids, before_audit)


def test_a_rule_given_twice_in_the_file_is_an_error(northwind_text):
    doubled = northwind_text.replace(
        "- priority: 10\n  task: Travel\n  category: travel\n",
        "- priority: 10\n  task: Travel\n  category: travel\n"
        "- priority: 15\n  task: travel\n  category: travel\n",
    )
    with pytest.raises(RulesFileInvalid) as caught:
        load_rules(doubled)
    assert [str(e) for e in caught.value.errors] == [
        "rules[1]: duplicate rule: same matchers and category as rules[0]"
    ]


# --- derivations stay readable ---------------------------------------------------------------


@pytest.fixture
def drafted_line(northwind_text):
    import_rules(northwind_text)
    ana = Person.objects.get(email="ana@northwind.example")
    make.entry(Project.objects.get(code="ACME-LIT"), ana, notes="Kick-off with the client")
    draft_invoices(period=Period.month("2026-10"))
    return InvoiceLine.objects.get(kind="time")


def test_a_derivation_still_names_the_rate_and_rule_it_used_after_a_reimport(
    drafted_line, northwind_text
):
    cited = drafted_line.derivation["rate"]
    assert (cited["rate"], cited["level_label"]) == ("300.00", "5. client + role")
    [source] = drafted_line.derivation["classified_by"]

    import_rules(northwind_text)

    rate = Rate.objects.get(pk=cited["row"])
    assert (str(rate.rate), rate.role, rate.client.name) == ("300.00", "Partner", "Acme Legal LLP")
    rule = ClassificationRule.objects.get(pk=int(source.removeprefix("rule #")))
    assert rule.category.key == "discovery"


def test_a_derivation_says_what_it_cites_after_the_row_is_deleted(drafted_line, northwind_text):
    cited = drafted_line.derivation["rate"]
    import_rules(northwind_text.replace("  rates:\n  - role: Partner\n    rate: '300.00'\n", ""))
    import_rules(
        northwind_text.replace("  rates:\n  - role: Partner\n    rate: '300.00'\n", ""), prune=True
    )
    assert not Rate.objects.filter(pk=cited["row"]).exists()

    line = InvoiceLine.objects.get(pk=drafted_line.pk)
    assert line.derivation["rate"] == cited
    assert (cited["rate"], cited["level_label"], cited["for"]) == (
        "300.00",
        "5. client + role",
        "role Partner",
    )
    # The audit trail keeps the deleted row as it was, under the id the derivation names.
    deleted = apps.get_model("invoices", "RateHistory").objects.get(
        pgh_obj_id=cited["row"], pgh_label="delete"
    )
    assert (deleted.role, str(deleted.rate)) == ("Partner", "300.00")


# --- bill_approved_only ----------------------------------------------------------------------


def test_bill_approved_only_imports_exports_and_reaches_the_core(northwind_text):
    text = northwind_text.replace(
        "  group_lines_by: category_person\n",
        "  group_lines_by: category_person\n  bill_approved_only: true\n",
    )
    import_rules(text)
    globex = Client.objects.get(name="Globex Retail")
    acme = Client.objects.get(name="Acme Legal LLP")

    assert ClientPolicy.objects.get(client=globex).bill_approved_only is True
    policies = load_policies()
    assert (policies[globex.id].bill_approved_only, policies[acme.id].bill_approved_only) == (
        True,
        False,
    )
    exported = export_rules()
    assert "  bill_approved_only: true\n" in exported
    assert import_rules(exported).policies.unchanged == 5
    assert export_rules() == exported


# --- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "firm: {name: F}\nrules: " + "[" * 20000 + "]" * 20000 + "\n",
            "line 2, column 107: nested more than 100 levels deep; a rules file needs at most 6",
        ),
        (
            "firm: {name: F}\nclients:\n"
            + "".join("  " * depth + "a:\n" for depth in range(3000))
            + "  " * 3000
            + "b\n",
            "line 102, column 199: nested more than 100 levels deep; a rules file needs at most 6",
        ),
    ],
    ids=["20000 brackets", "3000-deep mapping"],
)
def test_deep_nesting_is_refused_with_its_place(text, expected):
    with pytest.raises(RulesFileInvalid) as caught:
        load_rules(text)
    assert [str(e) for e in caught.value.errors] == [expected]


def test_a_backtracking_pattern_classifies_in_linear_time(northwind_text):
    """`(a+)+$` takes Python's backtracking engine about 2**n steps on n a's and a '!': some
    30 s here for n = 27. A linear-time engine answers at once; 5 s leaves room for a busy
    machine without letting an exponential engine pass."""
    hostile = northwind_text.replace(
        "- priority: 10\n",
        "- priority: 5\n  notes_regex: (a+)+$\n  category: admin\n- priority: 10\n",
    )
    import_rules(northwind_text)
    project = Project.objects.get(code="ACME-LIT")
    ana = Person.objects.get(email="ana@northwind.example")
    slow = make.entry(project, ana, notes="a" * 27 + "!")
    plain = make.entry(project, ana, notes="aaa")

    started = time.monotonic()
    import_rules(hostile)  # classifies every entry against the new rules
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert Classification.objects.get(entry=plain).category.key == "admin"
    assert Classification.objects.get(entry=slow).tier != "rule"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(\w+) \1", r"invalid escape sequence: \1"),
        (r"(?i)deploy(?!ment)", "invalid perl operator: (?!"),
    ],
)
def test_a_pattern_the_linear_time_engine_cannot_run_is_refused_by_name(
    northwind_text, pattern, reason
):
    text = northwind_text.replace(
        "- priority: 10\n",
        f"- priority: 5\n  notes_regex: '{pattern}'\n  category: admin\n- priority: 10\n",
    )
    with pytest.raises(RulesFileInvalid) as caught:
        load_rules(text)
    assert [str(e) for e in caught.value.errors] == [
        f"rules[0].notes_regex: pattern '{pattern}' refused: {reason} (rules run on RE2, a "
        "linear-time engine without backreferences, lookahead or lookbehind)"
    ]


def test_the_admin_rule_form_refuses_what_the_rules_file_refuses(northwind_text):
    import_rules(northwind_text)
    form = ClassificationRuleForm(
        data={
            "priority": 5,
            "notes_regex": r"(?i)deploy(?!ment)",
            "category": Category.objects.get(key="admin").pk,
        }
    )

    assert not form.is_valid()
    assert form.errors["notes_regex"] == [
        r"pattern '(?i)deploy(?!ment)' refused: invalid perl operator: (?! (rules run on RE2, a "
        "linear-time engine without backreferences, lookahead or lookbehind)"
    ]
    fine = ClassificationRuleForm(
        data={
            "priority": 5,
            "notes_regex": r"(a+)+$",
            "category": Category.objects.get(key="admin").pk,
        }
    )
    assert fine.is_valid(), fine.errors
