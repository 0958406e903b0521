"""The rules file (billing semantics section 9): validation, import, export, round trip.

Real PostgreSQL, no mocks. "Changes nothing" is checked by comparing a snapshot of every
configuration row (with ids) before and after.
"""

import datetime as dt
import io
import os
import subprocess
import sys
import typing
from decimal import Decimal as D
from urllib.parse import quote

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from invoices.core.policy import GroupBy, RoundingLocus, RoundingMode
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    Classification,
    ClassificationRule,
    ClientPolicy,
    Firm,
    Rate,
    RateMultiplier,
)
from invoices.rulesfile import (
    RulesError,
    RulesFileInvalid,
    export_rules,
    import_rules,
    load_rules,
)
from invoices.rulesfile.schema import (
    GroupByValue,
    ProjectBillingValue,
    RoundingLocusValue,
    RoundingModeValue,
)
from timesheets.models import Client, Person, Project, TimeEntry


@pytest.fixture
def northwind_text(northwind_dir):
    return (northwind_dir / "rules.yaml").read_text(encoding="utf-8")


def snapshot(*, ids: bool) -> dict[str, list[tuple]]:
    """Every configuration row as a tuple of plain values. With ids=False, rows are named by
    natural keys only, so two databases with the same configuration compare equal."""

    def pk(row):
        return (row.pk,) if ids else ()

    def code(project):
        return project.code if project else None

    firm = Firm.objects.filter(pk=1).first()
    return {
        "firm": [
            (
                firm.name,
                firm.currency,
                firm.default_rate,
                firm.address,
                firm.tax_id,
                firm.logo_url,
                firm.payment_instructions,
            )
        ]
        if firm
        else [],
        "categories": sorted(
            (*pk(c), c.key, c.name, c.billable, c.billing_code) for c in Category.objects.all()
        ),
        "people": sorted((*pk(p), p.email, p.name, p.role) for p in Person.objects.all()),
        "clients": sorted((*pk(c), c.name) for c in Client.objects.all()),
        "projects": sorted(
            (*pk(p), p.client.name, p.code, p.name, p.billing)
            for p in Project.objects.select_related("client")
        ),
        "policies": sorted(
            (
                p.client.name,
                p.currency,
                p.rounding_increment_minutes,
                p.rounding_mode,
                p.rounding_locus,
                p.minimum_minutes,
                tuple(sorted(c.key for c in p.non_billable_categories.all())),
                p.require_billing_codes,
                p.discount_percent,
                p.group_lines_by,
                p.show_non_billable,
                p.invoice_per_project,
                p.payment_terms_days,
                p.billing_address,
                p.billing_email,
                p.po_number,
            )
            for p in ClientPolicy.objects.select_related("client")
        ),
        "billing_codes": sorted(
            (*pk(b), b.client.name, b.category.key, b.code) for b in BillingCode.objects.all()
        ),
        "multipliers": sorted(
            (*pk(m), m.client.name, m.category.key, m.factor) for m in RateMultiplier.objects.all()
        ),
        "caps": sorted(
            (*pk(c), c.client.name, c.project.code, c.amount) for c in Cap.objects.all()
        ),
        "rates": sorted(
            (
                *pk(r),
                r.client.name if r.client else "",
                code(r.project) or "",
                r.person.email if r.person else "",
                r.role,
                r.rate,
                r.valid_from or dt.date.min,
                r.valid_to or dt.date.max,
            )
            for r in Rate.objects.all()
        ),
        "rules": sorted(
            (
                *pk(r),
                r.client.name if r.client else "",
                r.priority,
                r.task,
                r.notes_regex,
                code(r.project) or "",
                r.category.key,
            )
            for r in ClassificationRule.objects.all()
        ),
    }


def empty_configuration() -> None:
    for model in (ClassificationRule, Rate, Cap, BillingCode, RateMultiplier, ClientPolicy):
        model.objects.all().delete()
    Project.objects.all().delete()
    Client.objects.all().delete()
    Person.objects.all().delete()
    Category.objects.all().delete()
    Firm.objects.all().delete()


def errors_of(text: str, *, prune: bool = False) -> list[str]:
    with pytest.raises(RulesFileInvalid) as caught:
        import_rules(text, prune=prune)
    return [str(error) for error in caught.value.errors]


# --- import ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_northwind_creates_the_configuration(northwind_text):
    summary = import_rules(northwind_text)

    assert (summary.categories.created, summary.people.created, summary.clients.created) == (
        9,
        8,
        5,
    )
    assert (summary.projects.created, summary.policies.created) == (6, 5)
    # Lumen GmbH (the EU client taxed with VAT) adds its two rules and its project rate.
    assert (summary.rules.created, summary.rates.created) == (5, 9)
    assert summary.tax_codes.created == 1
    assert (summary.billing_codes.created, summary.rate_multipliers.created) == (4, 1)
    assert summary.caps.created == 1
    assert Category.objects.count() == 9
    assert Person.objects.count() == 8
    assert Client.objects.count() == 5
    assert Project.objects.count() == 6
    assert ClientPolicy.objects.count() == 5
    assert ClassificationRule.objects.filter(client__isnull=True).count() == 3
    assert Rate.objects.filter(client__isnull=True).count() == 6
    assert Rate.objects.filter(client__isnull=False).count() == 3

    firm = Firm.load()
    assert (firm.name, firm.currency, firm.default_rate) == (
        "Northwind Consulting",
        "USD",
        D("150.00"),
    )

    ben = Rate.objects.get(person__email="ben@northwind.example")
    assert (ben.client, ben.project, ben.role, ben.rate) == (None, None, "", D("240.00"))
    assert (ben.valid_from, ben.valid_to) == (dt.date(2026, 10, 15), None)

    acme = Client.objects.get(name="Acme Legal LLP")
    assert BillingCode.objects.get(client=acme, category__key="development").code == "L250"
    assert RateMultiplier.objects.get(client=acme, category__key="travel").factor == D("0.5")
    partner = Rate.objects.get(client=acme)
    assert (partner.project, partner.person, partner.role, partner.rate) == (
        None,
        None,
        "Partner",
        D("300.00"),
    )
    acme_policy = ClientPolicy.objects.get(client=acme)
    assert (acme_policy.rounding_increment_minutes, acme_policy.minimum_minutes) == (6, 6)
    assert acme_policy.require_billing_codes is True
    assert sorted(c.key for c in acme_policy.non_billable_categories.all()) == [
        "admin",
        "internal-meeting",
    ]

    globex = Client.objects.get(name="Globex Retail")
    cap = Cap.objects.get(client=globex)
    assert (cap.project.code, cap.amount) == ("GLX-SHOP", D("12000.00"))
    shop_rate = Rate.objects.get(project__code="GLX-SHOP")
    assert (shop_rate.client, shop_rate.rate) == (globex, D("180.00"))  # client = project's
    globex_policy = ClientPolicy.objects.get(client=globex)
    assert (globex_policy.currency, globex_policy.discount_percent) == ("EUR", D("5.00"))
    assert (globex_policy.group_lines_by, globex_policy.show_non_billable) == (
        "category_person",
        True,
    )
    assert Project.objects.get(code="GLX-INT").billing == "non_billable"

    initech = ClientPolicy.objects.get(client__name="Initech")
    assert (initech.rounding_increment_minutes, initech.rounding_mode) == (15, "up")
    assert initech.rounding_locus == "line"
    assert initech.payment_terms_days == 30  # default

    travel = ClassificationRule.objects.get(task="Travel")
    assert (travel.priority, travel.category.key, travel.notes_regex) == (10, "travel", "")


@pytest.mark.django_db
def test_reimport_is_idempotent_and_keeps_ids(northwind_text):
    import_rules(northwind_text)
    before = snapshot(ids=True)
    before_by_value = snapshot(ids=False)
    ids = {
        model: sorted(model.objects.values_list("id", flat=True))
        for model in (
            Client,
            Project,
            Person,
            Category,
            ClassificationRule,
            Rate,
            BillingCode,
            RateMultiplier,
            Cap,
        )
    }

    summary = import_rules(northwind_text)

    for model, expected in ids.items():
        assert sorted(model.objects.values_list("id", flat=True)) == expected
    for tally in (summary.categories, summary.people, summary.clients, summary.projects):
        assert (tally.created, tally.updated, tally.deleted) == (0, 0, 0)
    assert summary.categories.unchanged == 9
    assert summary.policies.unchanged == 5
    assert summary.firm == "unchanged"
    # Upserted by natural keys: the same rows, with the same ids.
    for tally in (summary.rules, summary.rates, summary.billing_codes, summary.caps):
        assert (tally.created, tally.updated, tally.deleted) == (0, 0, 0)
    assert (summary.rules.unchanged, summary.rates.unchanged) == (5, 9)
    assert snapshot(ids=True) == before
    assert snapshot(ids=False) == before_by_value


@pytest.mark.django_db
def test_reimport_updates_in_place(northwind_text):
    import_rules(northwind_text)
    acme = Client.objects.get(name="Acme Legal LLP")
    project = Project.objects.get(code="ACME-LIT")
    code = BillingCode.objects.get(client=acme, category__key="development")
    edited = (
        northwind_text.replace("name: Litigation support", "name: Litigation")
        .replace("development: L250", "development: L251")
        .replace("- name: Acme Legal LLP", "- name: ACME Legal LLP")
    )

    summary = import_rules(edited)

    assert Client.objects.get(pk=acme.pk).name == "ACME Legal LLP"  # matched case-insensitively
    assert Project.objects.get(pk=project.pk).name == "Litigation"
    assert BillingCode.objects.get(pk=code.pk).code == "L251"
    assert (summary.clients.updated, summary.projects.updated) == (1, 1)
    assert (summary.billing_codes.updated, summary.billing_codes.unchanged) == (1, 3)


@pytest.mark.django_db
def test_project_names_can_be_swapped(northwind_text):
    import_rules(northwind_text)
    shop, onboarding = Project.objects.get(code="GLX-SHOP"), Project.objects.get(code="GLX-INT")
    swapped = (
        northwind_text.replace("name: Webshop rebuild", "name: @@")
        .replace("name: Internal onboarding", "name: Webshop rebuild")
        .replace("name: @@", "name: Internal onboarding")
    )

    import_rules(swapped)

    assert Project.objects.get(pk=shop.pk).name == "Internal onboarding"
    assert Project.objects.get(pk=onboarding.pk).name == "Webshop rebuild"


@pytest.mark.django_db
def test_absent_unused_category_is_kept_or_pruned(northwind_text):
    import_rules(northwind_text)
    without_design = northwind_text.replace("- key: design\n  name: Design\n  billable: true\n", "")

    kept = import_rules(without_design)

    assert kept.categories.deleted == 0
    assert "categories not in the file, kept (--prune deletes them): design" in kept.lines()
    assert Category.objects.filter(key="design").exists()

    pruned = import_rules(without_design, prune=True)

    assert pruned.categories.deleted == 1
    assert "categories not in the file, deleted: design" in pruned.lines()
    assert not Category.objects.filter(key="design").exists()


# --- invalid files --------------------------------------------------------------------------

BROKEN = {
    # a date that does not exist
    "  rate: '240.00'\n  from: 2026-10-15": "  rate: '240.00'\n  from: 2026-10-32",
    # a category that is not listed
    "    travel: X100\n": "    travel: X100\n    devlopment: L250\n",
    # a field the schema does not know
    "  minimum_minutes: 6\n": "  minimum_minutes: 6\n  minimum_hours: 1\n",
    # a regex that does not compile
    r"(?i)\b(kick-?off|discovery": r"(?i)\b((kick-?off|discovery",
    # a discount above 100
    "discount_percent: '5'": "discount_percent: 120",
    # two project rates for the same project overlapping from 2026-10-01
    "  - project: GLX-SHOP\n    rate: '180.00'\n": (
        "  - project: GLX-SHOP\n    rate: '180.00'\n"
        "  - project: glx-shop\n    rate: '190.00'\n    from: 2026-10-01\n"
    ),
}


def broken_northwind(text: str) -> str:
    for old, new in BROKEN.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.mark.django_db
def test_invalid_file_lists_every_error_with_its_path_and_changes_nothing(northwind_text):
    import_rules(northwind_text)
    before = snapshot(ids=True)

    errors = errors_of(broken_northwind(northwind_text))

    assert errors == [
        r"rules[2].notes_regex: pattern '(?i)\b((kick-?off|discovery|stakeholder interview)\b' "
        r"refused: missing ): (?i)\b((kick-?off|discovery|stakeholder interview)\b",
        "rates[3].from: not a date",
        "clients[0].minimum_hours: unknown field",
        "clients[0].billing_codes.devlopment: unknown category 'devlopment'",
        "clients[1].discount_percent: must be at most 100",
        "clients[1].rates[1]: overlaps clients[1].rates[0] (both project GLX-SHOP, "
        "2026-10-01..open)",
    ]
    assert snapshot(ids=True) == before


@pytest.mark.django_db
def test_invalid_file_into_empty_database_creates_nothing(northwind_text):
    before = snapshot(ids=True)
    with pytest.raises(RulesFileInvalid):
        import_rules(broken_northwind(northwind_text))
    assert snapshot(ids=True) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("firm: {}\n", ["firm.name: required"]),
        ("categories: []\n", ["firm: required"]),
        (
            "firm: {name: F, currency: usd}\n",
            ["firm.currency: must be an ISO 4217 code of 3 capital letters, e.g. USD"],
        ),
        (
            "firm: {name: F, default_rate: abc}\n",
            ["firm.default_rate: not a number"],
        ),
        (
            "firm: {name: F}\nrates:\n- {rate: '100.00'}\n",
            [
                "rates[0]: names neither a person nor a role; the firm-wide default rate is "
                "firm.default_rate"
            ],
        ),
        (
            "firm: {name: F}\npeople: [{email: a@x.example, name: A}]\n"
            "rates:\n- {person: a@x.example, role: Partner, rate: 1}\n",
            ["rates[0]: names both a person and a role; a rate row is for one of them"],
        ),
        (
            "firm: {name: F}\nrates:\n- {person: nobody@x.example, rate: '1.005'}\n",
            [
                "rates[0].person: unknown person 'nobody@x.example' (not listed under people)",
                "rates[0].rate: at most 2 decimal places",
            ],
        ),
        (
            "firm: {name: F}\nrates:\n- {role: Partner, rate: 100, from: 2026-10-01, "
            "to: 2026-09-30}\n",
            ["rates[0].to: earlier than from (2026-10-01)"],
        ),
        (
            "firm: {name: F}\ncategories:\n- {key: dev, name: Dev}\n- {key: dev, name: Dev 2}\n"
            "- {key: has space, name: X}\n",
            [
                "categories[1].key: duplicate category key 'dev' (also categories[0].key)",
                "categories[2].key: must be a key of letters, digits, '-' and '_' only (no spaces)",
            ],
        ),
        (
            "firm: {name: F}\ncategories: [{key: dev, name: Dev}]\n"
            "rules: [{priority: 1, category: dev}]\n",
            ["rules[0]: needs at least one matcher: task, notes_regex or project"],
        ),
        (
            "firm: {name: F}\ncategories: [{key: dev, name: Dev}]\nclients:\n"
            "- name: A\n  projects: [{code: A1, name: One}]\n"
            "- name: a\n  rounding: {mode: sideways, increment_minutes: '6'}\n"
            "  projects: [{code: a1, name: Uno, billing: fixed}]\n"
            "  caps: [{project: A1, amount: '10.00'}]\n"
            "  rules: [{task: X, category: dev, project: NOPE}]\n",
            [
                "clients[1].name: duplicate client 'a' (also clients[0].name)",
                "clients[1].rounding.mode: must be one of: up, nearest, down",
                "clients[1].rounding.increment_minutes: must be a whole number",
                "clients[1].projects[0].code: duplicate project code 'a1' "
                "(also clients[0].projects[0].code)",
                "clients[1].projects[0].billing: must be one of: hourly, non_billable, fixed_fee",
                "clients[1].caps[0].project: project 'A1' belongs to A, not this client",
                "clients[1].rules[0].project: unknown project 'NOPE' (not a project of a)",
            ],
        ),
        (
            "firm: {name: F}\nclients:\n- name: A\n  rates:\n  - {role: Partner, rate: 1}\n"
            "  - {role: partner, rate: 2, to: 2026-01-31}\n",
            [
                "clients[0].rates[1]: overlaps clients[0].rates[0] (both role Partner, "
                "open..2026-01-31)"
            ],
        ),
        (
            "firm: {name: F}\nclients:\n- name: A\n  rates:\n  - {rate: 1}\n  - {rate: 2}\n",
            ["clients[0].rates[1]: overlaps clients[0].rates[0] (both client rate, all dates)"],
        ),
        (
            "firm: {name: F}\nclients:\n- name: A\n  billing_codes: {x: 120}\n",
            [
                "clients[0].billing_codes.x: must be text (quote it if it looks like a number, "
                "date or yes/no)",
                "clients[0].billing_codes.x: unknown category 'x'",
            ],
        ),
        (
            "firm: {name: F, logo_url: 'ftp://x.example/l.png', tax_id: '"
            + "9" * 51
            + "'}\nclients:\n- {name: A, po_number: 4500012876, billing_email: nobody}\n",
            [
                "firm.logo_url: not an http(s) URL",
                "firm.tax_id: at most 50 characters",
                "clients[0].po_number: must be text (quote it if it looks like a number, "
                "date or yes/no)",
                "clients[0].billing_email: not an email address",
            ],
        ),
    ],
)
def test_schema_and_reference_errors(text, expected):
    with pytest.raises(RulesFileInvalid) as caught:
        load_rules(text)
    assert [str(e) for e in caught.value.errors] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "firm:\n  name: Northwind\n  currency: [USD\n",
            "line 4, column 1: YAML syntax error: expected ',' or ']', but got '<stream end>'",
        ),
        (
            "firm:\n  name: Northwind\n    currency: USD\n",
            "line 3, column 13: YAML syntax error: mapping values are not allowed here",
        ),
        (
            "firm: {name: A}\nclients:\n- name: B\n  rates: []\n  rates: []\n",
            "line 5, column 3: duplicate key 'rates'",
        ),
        ("- firm\n", "the top level must be a mapping (firm:, categories:, ...), not a list"),
        ("", "the file is empty"),
    ],
)
def test_yaml_problems_are_located(text, expected):
    with pytest.raises(RulesFileInvalid) as caught:
        load_rules(text)
    assert [str(e) for e in caught.value.errors] == [expected]
    assert caught.value.errors[0].path == ""


def test_rules_error_reads_path_then_message():
    assert str(RulesError("clients[1].rates[0].from", "not a date")) == (
        "clients[1].rates[0].from: not a date"
    )


def test_decimals_are_never_floats():
    doc = load_rules(
        "firm: {name: F, default_rate: 150.10}\ncategories: [{key: t, name: T}]\n"
        "clients:\n- name: A\n  rate_multipliers: {t: 0.1}\n  discount_percent: 2.5\n"
    )
    assert doc.firm.default_rate == D("150.10")
    assert str(doc.clients[0].rate_multipliers["t"]) == "0.1"
    assert doc.clients[0].discount_percent == D("2.5")


def test_schema_choices_match_the_billing_core():
    assert set(typing.get_args(RoundingModeValue)) == {m.value for m in RoundingMode}
    assert set(typing.get_args(RoundingLocusValue)) == {m.value for m in RoundingLocus}
    assert set(typing.get_args(GroupByValue)) == {m.value for m in GroupBy}
    assert set(typing.get_args(ProjectBillingValue)) == set(Project.Billing.values)


# --- errors only the database can reveal ----------------------------------------------------


@pytest.mark.django_db
def test_removing_a_used_category_is_refused_and_changes_nothing(northwind_text):
    import_rules(northwind_text)
    project = Project.objects.get(code="ACME-LIT")
    ana = Person.objects.get(email="ana@northwind.example")
    for n in range(2):
        entry = TimeEntry.objects.create(
            source="csv",
            external_id=f"design-{n}",
            person=ana,
            client=project.client,
            project=project,
            date=dt.date(2026, 10, 1),
            duration_seconds=3600,
            content_hash="x",
        )
        Classification.objects.create(entry=entry, category=Category.objects.get(key="design"))
    before = snapshot(ids=True)
    # The firm's name changes too, so a partial apply would show.
    edited = northwind_text.replace(
        "- key: design\n  name: Design\n  billable: true\n", ""
    ).replace("name: Northwind Consulting", "name: Northwind Ltd")

    errors = errors_of(edited, prune=True)

    assert errors == [
        "categories: 'design' is absent but used by 2 classified entries; keep it in the file"
    ]
    assert snapshot(ids=True) == before


@pytest.mark.django_db
def test_a_project_cannot_move_to_another_client(northwind_text):
    import_rules(northwind_text)
    before = snapshot(ids=True)
    # Acme no longer lists the project, and Initech claims its code.
    moved = northwind_text.replace(
        "  projects:\n  - code: ACME-LIT\n    name: Litigation support\n    billing: hourly\n", ""
    ).replace("  - code: INI-API\n", "  - code: ACME-LIT\n")
    # Initech's engagement cap follows its project's code.
    moved = moved.replace("  - project: INI-API\n", "  - project: ACME-LIT\n")

    errors = errors_of(moved)

    assert errors == [
        "clients[2].projects[0].code: project 'ACME-LIT' belongs to client 'Acme Legal LLP' "
        "in the database; a project cannot move to another client"
    ]
    assert snapshot(ids=True) == before


@pytest.mark.django_db
def test_clients_absent_from_the_file_are_kept_with_their_rows(northwind_text):
    import_rules(northwind_text)
    umbrella = Client.objects.get(name="Umbrella Health")
    ClassificationRule.objects.create(
        client=umbrella,
        priority=5,
        task="Design review",
        category=Category.objects.get(key="design"),
    )
    without_umbrella = northwind_text[: northwind_text.index("- name: Umbrella Health")]
    without_design = without_umbrella.replace(
        "- key: design\n  name: Design\n  billable: true\n", ""
    )

    assert errors_of(without_design, prune=True) == [
        "categories: 'design' is absent but used by 1 rule of clients not in the file; keep it "
        "in the file"
    ]
    summary = import_rules(without_umbrella)

    assert summary.clients_not_in_file == ["Umbrella Health"]
    assert summary.projects_not_in_file == []
    assert "clients not in the file, kept unchanged: Umbrella Health" in summary.lines()
    assert ClassificationRule.objects.filter(client=umbrella).count() == 1
    assert ClientPolicy.objects.get(client=umbrella).rounding_mode == "nearest"


# --- export and round trip ------------------------------------------------------------------


@pytest.mark.django_db
def test_round_trip_gives_identical_text_and_configuration(northwind_text):
    import_rules(northwind_text)
    first_state = snapshot(ids=False)
    exported = export_rules()

    empty_configuration()
    assert snapshot(ids=False)["categories"] == []
    import_rules(exported)

    assert snapshot(ids=False) == first_state
    assert export_rules() == exported


@pytest.mark.django_db
def test_export_is_canonical_yaml_with_quoted_decimals(northwind_text):
    import_rules(northwind_text)
    text = export_rules()
    data = yaml.safe_load(text)

    assert text.startswith("# Billing configuration")
    assert list(data) == ["firm", "tax_codes", "categories", "rules", "people", "rates", "clients"]
    assert data["firm"] == {
        "name": "Northwind Consulting",
        "currency": "USD",
        "default_rate": "150.00",
        "address": "200 Harbor Way, Suite 410\nBoston, MA 02210\nUnited States",
        "tax_id": "EIN 46-2719834",
        "payment_instructions": "Bank transfer to Northwind Consulting LLC, First Harbor Bank\n"
        "Routing 011000138, account 4402 8817 3390\n"
        "Please quote the invoice number as the payment reference.",
    }
    assert "  address: |-\n    200 Harbor Way, Suite 410\n    Boston, MA 02210\n" in text
    assert [c["key"] for c in data["categories"]] == sorted(c["key"] for c in data["categories"])
    assert "- person: ben@northwind.example\n  rate: '240.00'\n  from: 2026-10-15\n" in text
    acme = data["clients"][0]
    assert list(acme) == [
        "name",
        "currency",
        "rounding",
        "minimum_minutes",
        "non_billable_categories",
        "billing_codes",
        "require_billing_codes",
        "rate_multipliers",
        "discount_percent",
        "caps",
        "group_lines_by",
        "show_non_billable",
        "bill_approved_only",
        "invoice_per_project",
        "payment_terms_days",
        "billing_address",
        "billing_email",
        "po_number",
        "projects",
        "rates",
        "rules",
    ]
    assert acme["rounding"] == {"increment_minutes": 6, "mode": "up", "locus": "entry"}
    assert acme["rate_multipliers"] == {"travel": "0.5000"}
    assert acme["discount_percent"] == "0.00"
    assert (acme["billing_email"], acme["po_number"]) == ("ap@acmelegal.example", "PO-2026-0117")
    assert "po_number" not in data["clients"][2]  # Initech has none: left out, not ''
    globex = data["clients"][1]
    assert globex["caps"] == [{"project": "GLX-SHOP", "amount": "12000.00"}]
    assert globex["rates"] == [{"project": "GLX-SHOP", "rate": "180.00"}]
    assert [r["role"] for r in data["rates"] if "role" in r] == [
        "Consultant",
        "Designer",
        "Developer",
        "Partner",
        "Senior Consultant",
    ]


@pytest.mark.django_db
def test_export_of_a_client_without_policy_round_trips(northwind_text):
    import_rules(northwind_text)
    Client.objects.create(name="Zeta Bank")  # e.g. created from the admin
    exported = export_rules()
    zeta = yaml.safe_load(exported)["clients"][-1]
    assert (zeta["name"], zeta["discount_percent"], zeta["payment_terms_days"]) == (
        "Zeta Bank",
        "0.00",
        30,
    )

    import_rules(exported)

    assert export_rules() == exported


# --- commands -------------------------------------------------------------------------------


def run_command(*args: str) -> tuple[str, str, CommandError | None]:
    """Run a command in this process (inside the test's transaction): stdout, stderr, and the
    CommandError that manage.py would turn into exit status 1."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


@pytest.mark.django_db
def test_import_command_prints_the_summary(northwind_dir):
    out, err, failure = run_command("import_rules", str(northwind_dir / "rules.yaml"))

    assert (err, failure) == ("", None)
    assert out.splitlines() == [
        "firm: updated",
        "tax codes: 1 created, 0 updated, 0 unchanged, 0 deleted",
        "categories: 9 created, 0 updated, 0 unchanged, 0 deleted",
        "people: 8 created, 0 updated, 0 unchanged, 0 deleted",
        "clients: 5 created, 0 updated, 0 unchanged, 0 deleted",
        "projects: 6 created, 0 updated, 0 unchanged, 0 deleted",
        "client policies: 5 created, 0 updated, 0 unchanged, 0 deleted",
        "classification rules: 5 created, 0 updated, 0 unchanged, 0 deleted",
        "rates: 9 created, 0 updated, 0 unchanged, 0 deleted",
        "billing codes: 4 created, 0 updated, 0 unchanged, 0 deleted",
        "rate multipliers: 1 created, 0 updated, 0 unchanged, 0 deleted",
        "caps: 1 created, 0 updated, 0 unchanged, 0 deleted",
        # Umbrella's fixed fee and its 3 milestones, Initech's retainer and engagement cap.
        "fixed fees, milestones, retainers and engagement caps: 6 created, 0 updated, "
        "0 unchanged, 0 deleted",
    ]
    assert Client.objects.count() == 5


@pytest.mark.django_db
def test_import_command_dry_run_saves_nothing(northwind_dir):
    before = snapshot(ids=True)

    out, _, failure = run_command("import_rules", str(northwind_dir / "rules.yaml"), "--dry-run")

    assert failure is None
    assert "clients: 5 created, 0 updated, 0 unchanged, 0 deleted" in out.splitlines()
    assert out.splitlines()[-1] == "dry run: the file is valid; nothing was saved"
    assert snapshot(ids=True) == before


@pytest.mark.django_db
def test_import_command_lists_every_error_on_stderr(northwind_text, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(broken_northwind(northwind_text), encoding="utf-8")

    out, err, failure = run_command("import_rules", str(path))

    assert out == ""
    assert err.splitlines() == [
        r"rules[2].notes_regex: pattern '(?i)\b((kick-?off|discovery|stakeholder interview)\b' "
        r"refused: missing ): (?i)\b((kick-?off|discovery|stakeholder interview)\b",
        "rates[3].from: not a date",
        "clients[0].minimum_hours: unknown field",
        "clients[0].billing_codes.devlopment: unknown category 'devlopment'",
        "clients[1].discount_percent: must be at most 100",
        "clients[1].rates[1]: overlaps clients[1].rates[0] (both project GLX-SHOP, "
        "2026-10-01..open)",
    ]
    assert failure is not None
    assert (str(failure), failure.returncode) == (f"{path}: 6 errors; nothing was changed", 1)
    assert Client.objects.count() == 0


@pytest.mark.django_db
def test_import_command_reports_yaml_syntax_error_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("firm:\n  name: X\n    currency: USD\n", encoding="utf-8")

    _, err, failure = run_command("import_rules", str(path))

    assert err == "line 3, column 13: YAML syntax error: mapping values are not allowed here\n"
    assert failure is not None and failure.returncode == 1


@pytest.mark.django_db
def test_import_command_missing_file(tmp_path):
    _, _, failure = run_command("import_rules", str(tmp_path / "nope.yaml"))
    assert (
        str(failure) == f"{tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory"
    )


def test_commands_exit_status_from_the_shell(
    django_db_setup, northwind_dir, northwind_text, tmp_path
):
    """manage.py itself, in a child process on the test database: only read-only runs (a
    rejected file, a dry run), so nothing is committed there."""
    env = {**os.environ, "DATABASE_URL": _database_url()}
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    bad = tmp_path / "bad.yaml"
    bad.write_text(broken_northwind(northwind_text), encoding="utf-8")

    rejected = subprocess.run(
        [*manage, "import_rules", str(bad)], capture_output=True, text=True, env=env, timeout=120
    )
    dry = subprocess.run(
        [*manage, "import_rules", str(northwind_dir / "rules.yaml"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    assert rejected.returncode == 1
    assert rejected.stdout == ""
    assert rejected.stderr.splitlines()[1] == "rates[3].from: not a date"
    assert rejected.stderr.splitlines()[-1] == f"CommandError: {bad}: 6 errors; nothing was changed"
    assert (dry.returncode, dry.stderr) == (0, "")
    assert dry.stdout.splitlines()[-1] == "dry run: the file is valid; nothing was saved"


def _database_url() -> str:
    db = connection.settings_dict
    login = quote(db["USER"], safe="") + (
        f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    )
    return f"postgres://{login}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db
def test_export_command_writes_stdout_or_file(northwind_text, tmp_path):
    import_rules(northwind_text)
    expected = export_rules()

    assert run_command("export_rules") == (expected, "", None)

    path = tmp_path / "out.yaml"
    assert run_command("export_rules", str(path)) == (f"wrote {path}\n", "", None)
    assert path.read_text(encoding="utf-8") == expected


@pytest.mark.django_db
def test_export_command_warns_about_configuration_a_file_cannot_hold(northwind_text):
    import_rules(northwind_text)
    Firm.objects.filter(pk=1).update(currency="usd")  # e.g. typed into the admin

    out, err, failure = run_command("export_rules")

    assert failure is None
    assert "  currency: usd\n" in out
    assert err.splitlines() == [
        "warning: the exported file would not import as it is:",
        "  firm.currency: must be an ISO 4217 code of 3 capital letters, e.g. USD",
    ]
