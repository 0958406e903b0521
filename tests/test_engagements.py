"""Fixed fees, retainers and engagement caps (billing semantics section 13, issue 13): first the
pure rules of `invoices.core.engagements`, one test per rule, then drafted, approved and voided
invoices on the real PostgreSQL."""

import datetime as dt
import re
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, transaction

from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.core.engagements import (
    CapTerms,
    Engagement,
    FixedFeeTerms,
    MilestoneTerms,
    RetainerTerms,
    alert_level,
    capped_amounts,
    due_milestones,
    milestone_amount,
    realization_percent,
    retainer_ledger_rows,
)
from invoices.core.policy import Policy
from invoices.core.pricing import PricedEntry, price_invoice
from invoices.core.rates import RateRow, RateTable
from invoices.drafting import Period, draft_invoices
from invoices.models import (
    EngagementCap,
    FixedFee,
    Invoice,
    InvoiceStatus,
    Milestone,
    Retainer,
    RetainerEntry,
)
from tests import billing_fixtures as make

OCTOBER = Period.month("2026-10")
NOVEMBER = Period.month("2026-11")
DAY = dt.date(2026, 10, 5)
USD = Policy(currency="USD")
RATES = RateTable([RateRow(id=1, rate=D("200.00"))])
FEE_PROJECT, HOURLY_PROJECT = 10, 20


# --- Pure rules ---------------------------------------------------------------------------------


def entry(id: int, seconds: int, project: int = FEE_PROJECT) -> PricedEntry:
    return PricedEntry(
        id=id,
        date=DAY,
        seconds=seconds,
        person=1,
        person_name="Ana Pereira",
        role="Partner",
        project=project,
        project_code=f"P{project}",
        project_name=f"Project {project}",
        task="Dev",
        category="development",
        category_name="Development",
        description=f"work {id}",
        source_label="rule #1",
        billable=True,
        billing_code="",
        needs_review=False,
    )


def fixed(*milestones: MilestoneTerms, show_time: bool = True) -> FixedFeeTerms:
    return FixedFeeTerms(FEE_PROJECT, "P10", "Project 10", D("10000.00"), show_time, milestones)


def engagement(**terms) -> Engagement:
    return Engagement(period_start=OCTOBER.start, period_end=OCTOBER.end, **terms)


@pytest.mark.parametrize(
    ("amount", "percent", "expected"),
    [
        (D("2500.00"), None, D("2500.00")),
        (None, D("33.33"), D("3333.00")),
        (None, D("12.345"), D("1234.50")),  # half up of 1234.5 exactly
        (None, D("0.005"), D("0.50")),
    ],
)
def test_a_milestone_bills_its_amount_or_its_percent_of_the_fee_rounded_once(
    amount, percent, expected
):
    milestone = MilestoneTerms(1, "Design", DAY, amount=amount, percent=percent)
    assert milestone_amount(milestone, D("10000.00"), "USD") == expected


def test_only_milestones_due_by_the_periods_end_are_billed_in_date_order():
    late = MilestoneTerms(1, "Build", dt.date(2026, 11, 1), percent=D("50"))
    undated = MilestoneTerms(2, "Launch", None, percent=D("25"))
    due = MilestoneTerms(3, "Design", dt.date(2026, 10, 31), percent=D("25"))
    early = MilestoneTerms(4, "Kick-off", dt.date(2026, 9, 1), amount=D("100"))
    assert due_milestones(fixed(late, undated, due, early), OCTOBER.end) == (early, due)


def test_a_fixed_fee_replaces_the_projects_hourly_lines_and_keeps_them_as_no_charge_detail():
    design = MilestoneTerms(7, "Design", DAY, percent=D("25"))
    draft = price_invoice(
        [entry(1, 3600), entry(2, 1800, HOURLY_PROJECT)],
        policy=USD,
        rates=RATES,
        client=1,
        engagement=engagement(fixed_fees={FEE_PROJECT: fixed(design)}),
    )
    shown = [(ln.kind, ln.description, ln.quantity, ln.amount) for ln in draft.lines]
    assert shown == [
        ("no_charge", "work 1, in the fixed fee (No charge)", D("1.0000"), D("0")),
        ("time", "work 2", D("0.5000"), D("100.00")),
        ("fixed_fee", "Project 10: Design", D("1"), D("2500.00")),
    ]
    assert (draft.subtotal, draft.total) == (D("2600.00"), D("2600.00"))
    assert [p.state for p in draft.lines[0].entries] == ["no_charge"]
    assert draft.lines[0].derivation["fixed_fee_time"]["standard_amount"] == "200.00"
    fee = draft.lines[2].derivation["fixed_fee"]
    assert (fee["milestone"], fee["standard_value"], fee["realization_percent"]) == (
        7,
        "200.00",
        "1250.0",
    )
    assert draft.lines[2].derivation["arithmetic"] == "25% of 10000.00 = 2500.00 USD"


def test_without_show_time_a_fixed_fee_projects_time_is_one_summary_line():
    draft = price_invoice(
        [entry(1, 3600), entry(2, 1800)],
        policy=Policy(currency="USD", group_lines_by="entry"),
        rates=RATES,
        client=1,
        engagement=engagement(fixed_fees={FEE_PROJECT: fixed(show_time=False)}),
    )
    [line] = draft.lines
    assert (line.kind, line.description, line.quantity, line.amount) == (
        "no_charge",
        "Time on Project 10, in the fixed fee (No charge)",
        D("1.5000"),
        D("0"),
    )
    assert sorted(p.entry_id for p in line.entries) == [1, 2]
    assert line.derivation["fixed_fee_time"]["standard_amount"] == "300.00"
    assert draft.total == D("0")


@pytest.mark.parametrize(
    ("billed", "standard", "expected"),
    [(D("2500"), D("200"), D("1250.0")), (D("1"), D("3"), D("33.3")), (D("2"), D("3"), D("66.7"))],
)
def test_realization_is_fee_over_standard_value_in_percent_to_one_place(billed, standard, expected):
    assert realization_percent(billed, standard) == expected
    assert realization_percent(billed, D("0")) is None


@pytest.mark.parametrize(
    ("balance", "monthly", "hours", "drawn", "total"),
    [
        (D("500.00"), None, 1, D("200.00"), D("0.00")),  # within the balance
        (D("150.00"), None, 1, D("150.00"), D("50.00")),  # the overage bills as usual
        (D("0"), None, 1, D("0"), D("200.00")),
        (D("-20.00"), None, 1, D("0"), D("200.00")),  # never adds to what is owed
        (D("50.00"), D("100.00"), 1, D("150.00"), D("50.00")),  # balance + the month's allowance
    ],
)
def test_a_retainer_draws_down_what_the_invoice_owes_up_to_its_balance(
    balance, monthly, hours, drawn, total
):
    draft = price_invoice(
        [entry(1, 3600 * hours, HOURLY_PROJECT)],
        policy=USD,
        rates=RATES,
        client=1,
        engagement=engagement(retainer=RetainerTerms(balance, monthly)),
    )
    line = draft.lines[-1]
    assert (line.kind, line.amount) == ("drawdown", -drawn)
    assert (draft.adjustments, draft.total) == (-drawn, total)
    assert line.derivation["retainer"]["overage"] == str(total)
    assert "cap_applied" not in draft.flags


def test_the_drawdown_follows_the_discount():
    draft = price_invoice(
        [entry(1, 3600, HOURLY_PROJECT)],
        policy=Policy(currency="USD", discount_percent=D("10")),
        rates=RATES,
        client=1,
        engagement=engagement(retainer=RetainerTerms(D("1000.00"))),
    )
    assert [(ln.kind, ln.amount) for ln in draft.lines] == [
        ("time", D("200.00")),
        ("discount", D("-20.00")),
        ("drawdown", D("-180.00")),
    ]


@pytest.mark.parametrize(
    ("drawn", "available", "monthly", "rollover", "rows"),
    [
        (D("80"), D("500"), None, True, [("drawdown", D("-80"))]),
        (D("80"), D("100"), D("100"), True, [("allowance", D("100")), ("drawdown", D("-80"))]),
        (
            D("80"),
            D("100"),
            D("100"),
            False,
            [("allowance", D("100")), ("drawdown", D("-80")), ("expiry", D("-20"))],
        ),
        (D("0"), D("100"), D("100"), False, [("allowance", D("100")), ("expiry", D("-100"))]),
        (D("100"), D("100"), D("100"), False, [("allowance", D("100")), ("drawdown", D("-100"))]),
    ],
)
def test_approval_records_the_allowance_the_drawdown_and_without_rollover_the_expiry(
    drawn, available, monthly, rollover, rows
):
    assert (
        retainer_ledger_rows(
            drawn=drawn, available=available, monthly_amount=monthly, rollover=rollover
        )
        == rows
    )


def cap(**kw) -> CapTerms:
    values = dict(
        id=1,
        project_code="P20",
        starts_on=dt.date(2026, 9, 1),
        ends_on=dt.date(2027, 2, 28),
        project=HOURLY_PROJECT,
    )
    values.update(kw)
    return CapTerms(**values)


def test_an_engagement_cap_lowers_the_per_period_cap_to_what_it_has_left():
    caps = {"P20": D("1000.00"), "P30": D("50.00")}
    assert capped_amounts(caps, [cap(amount=D("5000"), used_amount=D("4700"))]) == {
        "P20": D("300"),
        "P30": D("50.00"),
    }
    assert capped_amounts({}, [cap(amount=D("100"), used_amount=D("300"))]) == {"P20": D("0")}
    assert capped_amounts(caps, [cap(hours=D("10"))]) == caps  # hours only alert


def test_an_engagement_cap_cuts_the_invoice_to_its_remainder_and_says_why():
    draft = price_invoice(
        [entry(1, 7200, HOURLY_PROJECT)],
        policy=USD,
        rates=RATES,
        client=1,
        engagement=engagement(caps=(cap(amount=D("1000.00"), used_amount=D("900.00")),)),
    )
    assert [(ln.kind, ln.amount) for ln in draft.lines] == [
        ("time", D("400.00")),
        ("cap", D("-300.00")),
    ]
    assert draft.lines[1].derivation["engagement_cap"]["remaining"] == "100.00"
    assert "cap_applied" in draft.flags


def test_an_engagement_cap_outside_the_period_does_nothing():
    draft = price_invoice(
        [entry(1, 7200, HOURLY_PROJECT)],
        policy=USD,
        rates=RATES,
        client=1,
        engagement=engagement(caps=(cap(amount=D("0"), ends_on=dt.date(2026, 9, 30)),)),
    )
    assert draft.total == D("400.00")


@pytest.mark.parametrize(
    ("used", "limit", "level"),
    [
        (D("99"), D("200"), None),
        (D("100"), D("200"), 50),
        (D("159.99"), D("200"), 50),
        (D("160"), D("200"), 80),
        (D("200"), D("200"), 100),
        (D("250"), D("200"), 100),
        (D("5"), None, None),
    ],
)
def test_cap_alerts_at_50_80_and_100_percent(used, limit, level):
    assert alert_level(used, limit) == level


def test_per_project_invoices_take_their_projects_terms_and_no_retainer():
    terms = engagement(
        fixed_fees={FEE_PROJECT: fixed()},
        retainer=RetainerTerms(D("100")),
        caps=(cap(amount=D("1")),),
    )
    scoped = terms.for_scope(FEE_PROJECT)
    assert (list(scoped.fixed_fees), scoped.retainer, scoped.caps) == ([FEE_PROJECT], None, ())
    assert terms.for_scope(None) is terms


# --- On PostgreSQL ------------------------------------------------------------------------------

pg = pytest.mark.django_db


@pytest.fixture
def setup(db):
    make.firm()
    dev = make.category("development")
    acme = make.client("Acme")
    hourly = make.project(acme, "ACME", name="Acme support")
    build = make.project(acme, "SITE", name="Acme website", billing="fixed_fee")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    return {"client": acme, "hourly": hourly, "build": build, "ana": ana}


@pytest.fixture
def approver(db):
    user = User.objects.create_user("approver", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["approve_invoice", "void_invoice"])
    )
    return User.objects.get(pk=user.pk)


def the_draft(period=OCTOBER) -> Invoice:
    [draft] = draft_invoices(period=period).invoices
    return draft


def lines_of(invoice):
    return [(ln.kind, ln.amount) for ln in invoice.lines.order_by("position")]


@pg
def test_a_drafted_fixed_fee_bills_its_milestone_once_and_a_void_releases_it(setup, approver):
    fee = FixedFee.objects.create(project=setup["build"], fee=D("8000.00"))
    design = Milestone.objects.create(
        fixed_fee=fee, name="Design", percent=D("25"), due_on=dt.date(2026, 10, 15)
    )
    make.entry(setup["build"], setup["ana"], minutes=120)
    make.entry(setup["hourly"], setup["ana"], minutes=60)
    draft = the_draft()
    assert lines_of(draft) == [
        ("no_charge", D("0")),
        ("time", D("200.00")),
        ("fixed_fee", D("2000.00")),
    ]
    assert draft.total == D("2200.00")
    approved = approve_invoice(invoice=draft, user=approver)
    design.refresh_from_db()
    assert design.billed_on_id == approved.pk
    # November's draft does not bill it again; a milestone alone makes a draft.
    Milestone.objects.create(fixed_fee=fee, name="Build", amount=D("3000"), due_on=NOVEMBER.end)
    november = the_draft(NOVEMBER)
    assert lines_of(november) == [("fixed_fee", D("3000.00"))]
    november.delete()
    void_invoice(invoice=approved, user=approver, reason="wrong fee")
    successor = the_draft()
    assert ("fixed_fee", D("2000.00")) in lines_of(successor)


@pg
def test_two_drafts_billing_one_milestone_approve_once(setup, approver):
    fee = FixedFee.objects.create(project=setup["build"], fee=D("8000.00"))
    Milestone.objects.create(fixed_fee=fee, name="Design", amount=D("500"), due_on=OCTOBER.end)
    october, november = the_draft(), the_draft(NOVEMBER)
    approve_invoice(invoice=october, user=approver)
    november.refresh_from_db()
    assert "stale" in november.flags
    Invoice.objects.filter(pk=november.pk).update(flags=[])  # as if seen again: approval refuses
    with pytest.raises(InvalidTransition, match="billed on another invoice since"):
        approve_invoice(invoice=november, user=approver)
    november.refresh_from_db()
    assert november.status == InvoiceStatus.DRAFT


@pg
def test_a_retainer_draws_down_at_approval_exactly_once_and_a_void_reverses_it(setup, approver):
    Retainer.objects.create(client=setup["client"])
    RetainerEntry.objects.create(
        client=setup["client"], kind="top_up", amount=D("300.00"), on_date=dt.date(2026, 9, 20)
    )
    make.entry(setup["hourly"], setup["ana"], minutes=120)
    draft = the_draft()
    assert lines_of(draft) == [("time", D("400.00")), ("drawdown", D("-300.00"))]
    assert draft.total == D("100.00")
    assert not RetainerEntry.objects.filter(kind="drawdown").exists()  # a draft draws nothing
    approved = approve_invoice(invoice=draft, user=approver)
    ledger = list(RetainerEntry.objects.values_list("kind", "amount", "invoice_id"))
    assert ledger == [("top_up", D("300.00"), None), ("drawdown", D("-300.00"), approved.pk)]
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            RetainerEntry.objects.create(
                client=setup["client"],
                kind="drawdown",
                amount=D("-1"),
                on_date=OCTOBER.end,
                invoice=approved,
            )
    # November's draft sees the balance after October's approval.
    make.entry(setup["hourly"], setup["ana"], minutes=60, day=dt.date(2026, 11, 3))
    november = the_draft(NOVEMBER)
    assert lines_of(november)[-1] == ("drawdown", D("0.00"))
    void_invoice(invoice=approved, user=approver, reason="wrong client")
    assert RetainerEntry.objects.get(kind="reversal").amount == D("300.00")
    november.refresh_from_db()
    assert "stale" in november.flags  # it drew on the balance the void changed
    # The void changed the balance November's draft was computed with: approval refuses.
    with pytest.raises(InvalidTransition, match="rebuild it"):
        approve_invoice(invoice=november, user=approver)
    assert RetainerEntry.objects.filter(invoice=november).count() == 0


@pg
def test_a_monthly_retainer_without_rollover_lets_the_rest_of_the_month_expire(setup, approver):
    Retainer.objects.create(client=setup["client"], monthly_amount=D("500.00"), rollover=False)
    make.entry(setup["hourly"], setup["ana"], minutes=60)
    approved = approve_invoice(invoice=the_draft(), user=approver)
    assert approved.total == D("0.00")
    assert sorted(RetainerEntry.objects.values_list("kind", "amount")) == [
        ("allowance", D("500.00")),
        ("drawdown", D("-200.00")),
        ("expiry", D("-300.00")),
    ]
    make.entry(setup["hourly"], setup["ana"], minutes=180, day=dt.date(2026, 11, 3))
    november = the_draft(NOVEMBER)
    assert lines_of(november) == [("time", D("600.00")), ("drawdown", D("-500.00"))]


@pg
def test_an_engagement_cap_counts_what_approved_earlier_periods_billed(setup, approver):
    EngagementCap.objects.create(
        client=setup["client"],
        project=setup["hourly"],
        amount=D("500.00"),
        hours=D("4"),
        starts_on=OCTOBER.start,
        ends_on=dt.date(2027, 3, 31),
    )
    make.entry(setup["hourly"], setup["ana"], minutes=120)
    october = approve_invoice(invoice=the_draft(), user=approver)
    assert october.total == D("400.00")
    make.entry(setup["hourly"], setup["ana"], minutes=120, day=dt.date(2026, 11, 3))
    november = the_draft(NOVEMBER)
    assert lines_of(november) == [("time", D("400.00")), ("cap", D("-300.00"))]
    derivation = november.lines.get(kind="cap").derivation["engagement_cap"]
    assert (derivation["billed_before"], derivation["remaining"]) == ("400.00", "100.00")


@pg
def test_drafting_loads_engagements_in_a_fixed_number_of_queries(setup, django_assert_num_queries):
    from invoices.drafting_inputs import load_engagements

    for n in range(3):
        client = make.client(f"Client {n}")
        project = make.project(client, f"FX{n}", billing="fixed_fee")
        fee = FixedFee.objects.create(project=project, fee=D("100"))
        Milestone.objects.create(fixed_fee=fee, name="All", percent=D("100"), due_on=DAY)
        Retainer.objects.create(client=client)
        EngagementCap.objects.create(
            client=client, project=project, hours=D("1"), starts_on=DAY, ends_on=DAY
        )
    ids = list(Retainer.objects.values_list("client_id", flat=True))
    with django_assert_num_queries(6):
        loaded = load_engagements(client_ids=ids, start=OCTOBER.start, end=OCTOBER.end)
    assert sorted(loaded) == sorted(ids)


@pg
def test_the_overview_reports_fixed_fee_realization_and_engagement_cap_alerts(
    setup, approver, admin_client
):
    from django.urls import reverse

    from invoices.overview import month_overview
    from invoices.realization import fixed_fee_realization_by_client

    fee = FixedFee.objects.create(project=setup["build"], fee=D("1000.00"))
    Milestone.objects.create(fixed_fee=fee, name="All", percent=D("100"), due_on=OCTOBER.end)
    make.entry(setup["build"], setup["ana"], minutes=240)  # standard value 800.00
    EngagementCap.objects.create(
        client=setup["client"],
        project=setup["hourly"],
        hours=D("10"),
        starts_on=dt.date(2026, 9, 1),
        ends_on=dt.date(2027, 2, 28),
    )
    make.entry(setup["hourly"], setup["ana"], minutes=300, day=dt.date(2026, 9, 10))
    approve_invoice(invoice=the_draft(Period.month("2026-09")), user=approver)
    make.entry(setup["hourly"], setup["ana"], minutes=180)
    the_draft()
    # 1000.00 of a standard 800.00.
    assert fixed_fee_realization_by_client(period=OCTOBER) == {setup["client"].pk: D("125.0")}
    overview = month_overview(period=OCTOBER)
    [usage] = overview.engagement_caps
    # 5 h approved in September + 3 h on October's draft = 8 of 10 h.
    assert (usage.hours, usage.hours_percent, usage.level) == (D("8.0000"), D("80.0"), 80)
    assert overview.clients[0].fixed_fee_realization == D("125.0")
    page = admin_client.get(reverse("admin:invoices_invoice_month") + "?month=2026-10")
    html = page.content.decode()
    assert '<tr class="cap-alert-80">' in html and "80 % reached" in html
    assert "fixed fee 125.0 %" in html


@pg
def test_admin_tops_up_a_retainer_keeps_the_ledger_read_only_and_shows_the_derivations(
    setup, admin_client
):
    from django.urls import reverse

    Retainer.objects.create(client=setup["client"])
    make.entry(setup["hourly"], setup["ana"], minutes=60)
    draft = the_draft()
    add = reverse("admin:invoices_retainerentry_add")
    refused = admin_client.post(
        add, {"client": setup["client"].pk, "amount": "-5", "on_date": "2026-10-01", "note": ""}
    )
    assert "is not positive" in refused.content.decode()
    assert not RetainerEntry.objects.exists()
    admin_client.post(
        add,
        {
            "client": setup["client"].pk,
            "amount": "150.00",
            "on_date": "2026-10-01",
            "note": "check",
        },
    )
    [top_up] = RetainerEntry.objects.all()
    assert (top_up.kind, top_up.amount) == ("top_up", D("150.00"))
    draft.refresh_from_db()
    assert "stale" in draft.flags  # its drawdown was computed from the balance before
    change = reverse("admin:invoices_retainerentry_change", args=[top_up.pk])
    assert admin_client.post(change, {"amount": "1"}).status_code == 403
    assert RetainerEntry.objects.get().amount == D("150.00")
    rebuilt = the_draft()
    assert lines_of(rebuilt)[-1] == ("drawdown", D("-150.00"))
    page = admin_client.get(reverse("admin:invoices_invoice_change", args=[rebuilt.pk]))
    html = page.content.decode()
    assert "Retainer drawdown" in html
    assert "-min(150.00, 200.00) = -150.00 USD; overage 50.00" in html
    for name in ("fixedfee", "retainer", "engagementcap", "retainerentry"):
        assert admin_client.get(reverse(f"admin:invoices_{name}_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:invoices_fixedfee_add")).status_code == 200


@pg
def test_the_printable_invoice_shows_the_fee_the_time_at_no_charge_and_the_drawdown(
    setup, admin_client
):
    from django.urls import reverse

    fee = FixedFee.objects.create(project=setup["build"], fee=D("1000.00"))
    Milestone.objects.create(fixed_fee=fee, name="Design", amount=D("400"), due_on=OCTOBER.end)
    Retainer.objects.create(client=setup["client"])
    RetainerEntry.objects.create(
        client=setup["client"], kind="top_up", amount=D("150.00"), on_date=OCTOBER.start
    )
    make.entry(setup["build"], setup["ana"], minutes=120, notes="Wireframes")
    draft = the_draft()
    page = admin_client.get(reverse("admin:invoices_invoice_print", args=[draft.pk]))
    html = page.content.decode()
    assert "No charge: 2.0 h development: Wireframes, in the fixed fee" in html
    assert "Acme website: Design" in html and "Retainer drawdown" in html
    text = " ".join(re.sub(r"<[^>]*>", " ", html).split())
    assert "Subtotal 400.00 Retainer drawdown -150.00 Total due (USD) 250.00" in text


@pg
def test_a_rule_preview_prices_the_retainer_as_the_draft_does(setup):
    from invoices.models import ClassificationRule
    from invoices.rule_preview import preview_rule

    Retainer.objects.create(client=setup["client"])
    RetainerEntry.objects.create(
        client=setup["client"], kind="top_up", amount=D("150.00"), on_date=OCTOBER.start
    )
    make.entry(setup["hourly"], setup["ana"], minutes=60)
    assert the_draft().total == D("50.00")  # 200.00 less the 150.00 the retainer pays
    rule = ClassificationRule(category_id=None, priority=100, notes_regex="^nothing$")
    rule.category = make.category("development")
    (total,) = preview_rule(rule=rule, period=OCTOBER).totals
    assert (total.before, total.after) == (D("50.00"), D("50.00"))
