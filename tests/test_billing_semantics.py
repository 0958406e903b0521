"""The billing contract, rule by rule (docs/billing-semantics.md). Pure: no database.

Each test names the section it checks. Exact Decimal values throughout.
"""

import datetime as dt
import re
from decimal import Decimal as D
from fractions import Fraction

import pytest

from invoices.core.classify import (
    AMBIGUOUS,
    CategoryInfo,
    EntryFacts,
    ManualDecision,
    ModelAnswer,
    Rule,
    build_memory,
    classify,
    order_rules,
)
from invoices.core.policy import GroupBy, Policy, RoundingLocus, RoundingMode
from invoices.core.pricing import (
    Adjustment,
    ManualCharge,
    PricedEntry,
    PricingError,
    billed_minutes,
    price_invoice,
)
from invoices.core.rates import RateLevel, RateRow, RateTable, find_overlaps
from invoices.core.rounding import (
    currency_places,
    fraction_to_decimal,
    round_money,
    round_to_increment,
)
from timesheets.notes import normalize_notes

CATS = {
    "client-meeting": CategoryInfo("client-meeting", "Client meeting", True),
    "development": CategoryInfo("development", "Development", True, billing_code="DEV"),
    "travel": CategoryInfo("travel", "Travel", True),
    "internal-meeting": CategoryInfo("internal-meeting", "Internal meeting", False),
}
CLIENT, PROJECT, OTHER_PROJECT = 1, 10, 11
ANA, BEN = 100, 101
DAY = dt.date(2026, 10, 5)


def facts(**kw) -> EntryFacts:
    values = dict(
        id=1,
        client=CLIENT,
        project=PROJECT,
        project_billable=True,
        task="",
        notes="",
        normalized_notes="",
        tracker_billable=True,
    )
    values.update(kw)
    values.setdefault("normalized_notes", normalize_notes(values["notes"]))
    if "notes" in kw and "normalized_notes" not in kw:
        values["normalized_notes"] = normalize_notes(kw["notes"])
    return EntryFacts(**values)


def decide(entry=None, *, policy=None, rules=(), memory=None, **kw):
    return classify(
        entry or facts(),
        policy=policy or Policy(currency="USD"),
        categories=CATS,
        rules=order_rules(rules, CLIENT),
        memory=memory or {},
        **kw,
    )


# --- Section 2: classification -------------------------------------------------------------


def test_s2_1_manual_category_wins_over_rules_and_memory():
    rule = Rule(id=1, category="development", task="Meetings")
    d = decide(
        facts(task="Meetings", notes="x"),
        rules=[rule],
        memory={"x": "travel"},
        manual=ManualDecision(category="client-meeting"),
    )
    assert (d.category, d.tier, d.confidence, d.needs_review) == (
        "client-meeting",
        "manual",
        D(1),
        False,
    )


def test_s2_2_rules_in_priority_order_client_rules_first():
    firm_rule = Rule(id=1, category="travel", priority=1, task="Meetings")
    client_low = Rule(id=3, category="development", priority=50, client=CLIENT, task="Meetings")
    client_high = Rule(id=2, category="client-meeting", priority=5, client=CLIENT, task="meetings")
    d = decide(facts(task="MEETINGS"), rules=[firm_rule, client_low, client_high])
    assert (d.category, d.tier, d.rule_id, d.confidence) == ("client-meeting", "rule", 2, D(1))


def test_s2_2_same_priority_ties_break_by_id():
    rules = [Rule(id=7, category="travel", task="T"), Rule(id=4, category="development", task="T")]
    assert decide(facts(task="t"), rules=rules).rule_id == 4


@pytest.mark.parametrize(
    "rule, entry, matches",
    [
        (Rule(id=1, category="travel", task="Travel"), facts(task="travel"), True),
        (Rule(id=1, category="travel", task="Travel"), facts(task="Travel time"), False),
        (
            Rule(id=1, category="travel", notes_regex=re.compile(r"(?i)\bflight\b")),
            facts(notes="Flight to NYC"),
            True,
        ),
        (
            Rule(id=1, category="travel", notes_regex=re.compile(r"\bflight\b")),
            facts(notes="Flight to NYC"),
            False,
        ),
        (Rule(id=1, category="travel", project=PROJECT), facts(), True),
        (Rule(id=1, category="travel", project=OTHER_PROJECT), facts(), False),
        # every matcher a rule sets must match
        (
            Rule(id=1, category="travel", task="Travel", project=OTHER_PROJECT),
            facts(task="Travel"),
            False,
        ),
    ],
)
def test_s2_2_rule_matchers(rule, entry, matches):
    assert rule.matches(entry) is matches


def test_s2_3_memory_matches_normalized_notes():
    memory = build_memory([(normalize_notes("Sync w/ client!"), "client-meeting")])
    d = decide(facts(notes="  sync   W/ Client "), memory=memory)
    assert (d.category, d.tier, d.confidence) == ("client-meeting", "memory", D(1))


def test_s2_3_normalize_notes():
    assert normalize_notes("  Sync w/ CLIENT -- re: scope!! ") == "sync w client re scope"


def test_s2_3_disagreeing_history_does_not_decide():
    memory = build_memory([("project work", "development"), ("project work", "travel")])
    assert memory["project work"] == AMBIGUOUS
    d = decide(facts(notes="Project work"), memory=memory)
    assert d.needs_review and d.category is None
    assert "disagrees" in d.reason


def test_s2_4_model_answer_decides_when_allowed_and_confident():
    d = decide(
        facts(notes="sync w/ client"),
        model=ModelAnswer("client-meeting", "Client status call", D("0.9")),
    )
    assert (d.category, d.tier, d.confidence, d.description) == (
        "client-meeting",
        "llm",
        D("0.9"),
        "Client status call",
    )


@pytest.mark.parametrize(
    "answer, reason",
    [
        (ModelAnswer("bribery", "x", D("0.99")), "model chose 'bribery', which is not an allowed"),
        (ModelAnswer("development", "x", D("0.69")), "model confidence 0.69 is below"),
        (ModelAnswer(None, note="refused"), "model abstained: refused"),
    ],
)
def test_s2_4_bad_model_answers_leave_entry_needing_review(answer, reason):
    d = decide(facts(notes="project work"), model=answer)
    assert d.needs_review and d.category is None and not d.billable
    assert reason in d.reason
    assert d.description == "project work"  # the model's wording is not used


def test_s2_5_undecided_entry_needs_review_with_reason():
    d = decide(facts(notes="misc"), model_reason="no model configured")
    assert (d.needs_review, d.billable, d.tier) == (True, False, "")
    assert d.reason == "no category: no model configured"


@pytest.mark.parametrize(
    "entry, category, policy, billable",
    [
        (facts(), "development", Policy("USD"), True),
        (facts(tracker_billable=False), "development", Policy("USD"), False),
        (facts(project_billable=False), "development", Policy("USD"), False),
        (facts(), "internal-meeting", Policy("USD"), False),
        (
            facts(),
            "development",
            Policy("USD", non_billable_categories=frozenset({"development"})),
            False,
        ),
    ],
)
def test_s2_billable_needs_tracker_project_and_category(entry, category, policy, billable):
    d = decide(entry, policy=policy, manual=ManualDecision(category=category))
    assert d.billable is billable and not d.needs_review


def test_s2_reviewer_overrides_billable():
    d = decide(
        facts(tracker_billable=False), manual=ManualDecision(category="development", billable=True)
    )
    assert d.billable is True and d.tier == "manual"


def test_s2_non_billable_entry_never_needs_review_for_want_of_category():
    for entry in (facts(tracker_billable=False), facts(project_billable=False)):
        d = decide(entry)
        assert (d.needs_review, d.billable, d.category) == (False, False, None)


def test_s2_billing_code_client_then_category_default_then_none():
    policy = Policy("USD", billing_codes={"client-meeting": "L120"})
    assert decide(policy=policy, manual=ManualDecision("client-meeting")).billing_code == "L120"
    assert decide(policy=policy, manual=ManualDecision("development")).billing_code == "DEV"
    assert decide(policy=policy, manual=ManualDecision("travel")).billing_code == ""


def test_s2_required_billing_code_missing_needs_review():
    policy = Policy("USD", require_billing_codes=True)
    d = decide(policy=policy, manual=ManualDecision("travel"))
    assert d.needs_review and d.category == "travel"
    assert d.reason == "no billing code for category 'travel' (the client requires one)"
    # non-billable entries need no code
    assert not decide(policy=policy, manual=ManualDecision("internal-meeting")).needs_review


# --- Section 3: policy defaults ------------------------------------------------------------


def test_s3_policy_defaults():
    p = Policy(currency="USD")
    assert (p.increment_minutes, p.rounding_mode, p.rounding_locus, p.minimum_minutes) == (
        0,
        RoundingMode.UP,
        RoundingLocus.ENTRY,
        0,
    )
    assert (p.discount_percent, p.group_lines_by, p.show_non_billable) == (
        D(0),
        GroupBy.ENTRY,
        False,
    )
    assert (p.invoice_per_project, p.payment_terms_days, p.caps) == (False, 30, {})


# --- Section 4: hours ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, policy, minutes",
    [
        (612, Policy("USD"), Fraction(51, 5)),  # 4.1 exact: 10.2 min
        (10, Policy("USD"), Fraction(1, 6)),  # 4.1 exact thirds
        (120, Policy("USD", minimum_minutes=6), 6),  # 4.2 minimum
        (612, Policy("USD", increment_minutes=6), 12),  # 4.3 up
        (612, Policy("USD", increment_minutes=6, rounding_mode=RoundingMode.DOWN), 6),
        (612, Policy("USD", increment_minutes=6, rounding_mode=RoundingMode.NEAREST), 12),
        (
            540,
            Policy("USD", increment_minutes=6, rounding_mode=RoundingMode.NEAREST),
            12,
        ),  # 9: half up
        (539, Policy("USD", increment_minutes=6, rounding_mode=RoundingMode.NEAREST), 6),
        (
            120,
            Policy("USD", minimum_minutes=6, increment_minutes=15),
            15,
        ),  # minimum before rounding
        (
            612,
            Policy("USD", increment_minutes=6, rounding_locus=RoundingLocus.LINE),
            Fraction(51, 5),
        ),  # locus line: no per-entry
    ],
)
def test_s4_billed_minutes(seconds, policy, minutes):
    assert billed_minutes(seconds, policy) == minutes


def test_s4_round_to_increment_modes():
    assert round_to_increment(Fraction(22, 1), 15, "up") == 30
    assert round_to_increment(Fraction(22, 1), 15, "down") == 15
    assert round_to_increment(Fraction(45, 2), 15, "nearest") == 30  # 22.5 is half: up
    assert round_to_increment(Fraction(7, 1), 0, "up") == 7


# --- Section 5: rates ----------------------------------------------------------------------

ALL_LEVELS = [
    RateRow(1, D("301"), client=CLIENT, project=PROJECT, person=ANA),
    RateRow(2, D("302"), client=CLIENT, project=PROJECT, role="Partner"),
    RateRow(3, D("303"), client=CLIENT, project=PROJECT),
    RateRow(4, D("304"), client=CLIENT, person=ANA),
    RateRow(5, D("305"), client=CLIENT, role="Partner"),
    RateRow(6, D("306"), client=CLIENT),
    RateRow(7, D("307"), person=ANA),
    RateRow(8, D("308"), role="Partner"),
    RateRow(9, D("309")),
]


@pytest.mark.parametrize("level", list(RateLevel))
def test_s5_first_matching_level_wins(level):
    rows = [row for row in ALL_LEVELS if row.id >= level.value]
    match = RateTable(rows).resolve(
        day=DAY, client=CLIENT, project=PROJECT, person=ANA, role="partner"
    )
    assert (match.level, match.row.rate) == (level, D(300 + level.value))


def test_s5_rows_for_others_do_not_apply():
    rows = [RateRow(1, D("500"), client=CLIENT, person=BEN), RateRow(2, D("100"), role="Other")]
    assert (
        RateTable(rows).resolve(day=DAY, client=CLIENT, project=PROJECT, person=ANA, role="Partner")
        is None
    )


def test_s5_effective_dates_inclusive():
    rows = [
        RateRow(1, D("225"), person=BEN, valid_to=dt.date(2026, 10, 14)),
        RateRow(2, D("240"), person=BEN, valid_from=dt.date(2026, 10, 15)),
    ]
    table = RateTable(rows)

    def pick(day):
        return table.resolve(day=day, client=CLIENT, project=PROJECT, person=BEN, role="").row.rate

    assert pick(dt.date(2026, 10, 14)) == D("225")
    assert pick(dt.date(2026, 10, 15)) == D("240")


def test_s5_overlap_at_one_level_is_an_error():
    a = RateRow("a", D("1"), role="Partner", valid_from=dt.date(2026, 1, 1))
    b = RateRow("b", D("2"), role="partner", valid_to=dt.date(2026, 1, 1))
    c = RateRow("c", D("3"), role="Consultant")
    assert find_overlaps([a, b, c]) == [(a, b)]


def policy(**kw) -> Policy:
    return Policy(currency=kw.pop("currency", "USD"), **kw)


def entry(
    id,
    *,
    seconds=3600,
    day=DAY,
    person=ANA,
    name="Ana Pereira",
    role="Partner",
    project=PROJECT,
    code="P",
    category="development",
    billable=True,
    code_=None,
    needs_review=False,
    task="",
    description=None,
    reason="",
    adjustment=None,
) -> PricedEntry:
    cat = CATS.get(category)
    return PricedEntry(
        id=id,
        date=day,
        seconds=seconds,
        person=person,
        person_name=name,
        role=role,
        project=project,
        project_code=code,
        project_name=f"Project {code}",
        task=task,
        category=category,
        category_name=cat.name if cat else "Uncategorized",
        description=description if description is not None else f"note {id}",
        source_label="rule #1",
        billable=billable,
        billing_code=code_ if code_ is not None else "",
        needs_review=needs_review,
        review_reason=reason,
        adjustment=adjustment,
    )


ROLE_RATE = RateTable([RateRow(1, D("150.00"), role="Partner")])


def test_s5_no_rate_is_pending_never_billed_at_zero():
    draft = price_invoice([entry(1)], policy=policy(), rates=RateTable([]), client=CLIENT)
    assert draft.lines == [] and draft.total == 0
    assert draft.pending[0].pending_reason.startswith("no rate: none of the 9 rate levels")
    assert "zero_total" not in draft.flags


def test_s5_multiplier_then_rate_rounded_to_two_places():
    rates = RateTable([RateRow(1, D("225.55"), role="Partner")])
    draft = price_invoice(
        [entry(1, category="travel")],
        policy=policy(rate_multipliers={"travel": D("0.5")}),
        rates=rates,
        client=CLIENT,
    )
    # 225.55 x 0.5 = 112.775 -> 112.78 (half up), then 1 h x 112.78
    assert (draft.lines[0].unit_price, draft.lines[0].amount) == (D("112.78"), D("112.78"))
    assert draft.lines[0].derivation["multiplier"] == "0.5"


# --- Section 6: lines ----------------------------------------------------------------------


def test_s6_quantity_four_places_amount_from_shown_quantity():
    # 10 s = 1/360 h = 0.002777.. -> 0.0028 h; 0.0028 x 150 = 0.42
    draft = price_invoice([entry(1, seconds=10)], policy=policy(), rates=ROLE_RATE, client=CLIENT)
    line = draft.lines[0]
    assert (line.quantity, line.amount) == (D("0.0028"), D("0.42"))


def test_s6_entry_grouping_one_line_per_entry_with_its_description():
    draft = price_invoice(
        [entry(1, description="Drafted motion"), entry(2)],
        policy=policy(),
        rates=ROLE_RATE,
        client=CLIENT,
    )
    assert [ln.description for ln in draft.lines] == ["Drafted motion", "note 2"]
    assert [[p.entry_id for p in ln.entries] for ln in draft.lines] == [[1], [2]]


def test_s6_category_grouping_sums_and_describes():
    entries = [
        entry(1, seconds=1800),
        entry(2, seconds=2700, person=BEN, name="Ben Okafor"),
        entry(3, category="client-meeting", seconds=3600),
    ]
    draft = price_invoice(
        entries, policy=policy(group_lines_by=GroupBy.CATEGORY), rates=ROLE_RATE, client=CLIENT
    )
    assert [(ln.description, ln.quantity, ln.amount) for ln in draft.lines] == [
        ("Client meeting", D("1.0000"), D("150.00")),
        ("Development", D("1.2500"), D("187.50")),
    ]


def test_s6_category_person_and_task_descriptions():
    entries = [entry(1, task="Research"), entry(2, task="Research", person=BEN, name="Ben Okafor")]
    by_person = price_invoice(
        entries,
        policy=policy(group_lines_by=GroupBy.CATEGORY_PERSON),
        rates=ROLE_RATE,
        client=CLIENT,
    )
    assert [ln.description for ln in by_person.lines] == [
        "Development - Ana Pereira",
        "Development - Ben Okafor",
    ]
    by_task = price_invoice(
        entries, policy=policy(group_lines_by=GroupBy.TASK), rates=ROLE_RATE, client=CLIENT
    )
    assert [(ln.description, ln.quantity) for ln in by_task.lines] == [("Research", D("2.0000"))]


def test_s6_different_projects_rates_or_codes_never_share_a_line():
    rates = RateTable(
        [RateRow(1, D("150.00"), role="Partner"), RateRow(2, D("200.00"), person=BEN)]
    )
    entries = [
        entry(1),
        entry(2, project=OTHER_PROJECT, code="Q"),
        entry(3, person=BEN, name="Ana Pereira"),  # same name, other rate
        entry(4, code_="L250"),
    ]
    draft = price_invoice(
        entries, policy=policy(group_lines_by=GroupBy.CATEGORY), rates=rates, client=CLIENT
    )
    assert len(draft.lines) == 4
    assert sorted(ln.unit_price for ln in draft.lines) == [D(150)] * 3 + [D(200)]


def test_s6_line_order_by_date_person_category():
    entries = [
        entry(1, day=dt.date(2026, 10, 6)),
        entry(2, person=BEN, name="Ben Okafor"),
        entry(3, category="client-meeting"),
        entry(4),
    ]
    draft = price_invoice(entries, policy=policy(), rates=ROLE_RATE, client=CLIENT)
    assert [ln.entries[0].entry_id for ln in draft.lines] == [3, 4, 2, 1]


def test_s6_line_keeps_derivation():
    draft = price_invoice(
        [entry(1, seconds=612)],
        policy=policy(increment_minutes=6, minimum_minutes=6),
        rates=ROLE_RATE,
        client=CLIENT,
    )
    d = draft.lines[0].derivation
    assert d["rate"]["level"] == 8 and d["rate"]["rate"] == "150.00"
    assert d["rounding"] == {
        "increment_minutes": 6,
        "mode": "up",
        "locus": "entry",
        "minimum_minutes": 6,
    }
    assert (d["raw_minutes"], d["billed_minutes"]) == ("10.2000", "12")
    assert d["classified_by"] == {"rule #1": 1}
    assert d["arithmetic"] == "0.2000 h x 150.00 = 30.00 USD"


def test_s4_locus_line_rounds_the_sum_once():
    # three 7-minute entries: entry locus 3 x 15 = 45 min; line locus 21 -> 30 min
    entries = [entry(i, seconds=420) for i in (1, 2, 3)]
    line_policy = policy(
        increment_minutes=15, rounding_locus=RoundingLocus.LINE, group_lines_by=GroupBy.CATEGORY
    )
    entry_policy = policy(increment_minutes=15, group_lines_by=GroupBy.CATEGORY)
    line = price_invoice(entries, policy=line_policy, rates=ROLE_RATE, client=CLIENT).lines[0]
    per_entry = price_invoice(entries, policy=entry_policy, rates=ROLE_RATE, client=CLIENT)
    assert (line.quantity, line.amount) == (D("0.5000"), D("75.00"))
    assert (per_entry.lines[0].quantity, per_entry.lines[0].amount) == (D("0.7500"), D("112.50"))


def test_s4_locus_line_minimum_still_per_entry():
    entries = [entry(i, seconds=60) for i in (1, 2)]  # 1 min each, minimum 6 -> 12 -> 15
    p = policy(
        increment_minutes=15,
        minimum_minutes=6,
        rounding_locus=RoundingLocus.LINE,
        group_lines_by=GroupBy.CATEGORY,
    )
    line = price_invoice(entries, policy=p, rates=ROLE_RATE, client=CLIENT).lines[0]
    assert line.quantity == D("0.2500")
    assert [pl.billed_seconds for pl in line.entries] == [360, 360]


def test_s6_no_charge_lines_and_hidden_non_billable():
    entries = [entry(1), entry(2, billable=False, category="internal-meeting", seconds=1800)]
    shown = price_invoice(
        entries, policy=policy(show_non_billable=True), rates=ROLE_RATE, client=CLIENT
    )
    free = [ln for ln in shown.lines if ln.kind == "no_charge"]
    assert [(ln.description, ln.quantity, ln.unit_price, ln.amount) for ln in free] == [
        ("note 2 (No charge)", D("0.5000"), D(0), D(0))
    ]
    assert shown.total == D("150.00")
    hidden = price_invoice(entries, policy=policy(), rates=ROLE_RATE, client=CLIENT)
    assert [ln.kind for ln in hidden.lines] == ["time"]


def test_s6_pending_entry_is_on_no_line():
    entries = [entry(1), entry(2, needs_review=True, reason="no category")]
    draft = price_invoice(entries, policy=policy(), rates=ROLE_RATE, client=CLIENT)
    assert [p.entry_id for ln in draft.lines for p in ln.entries] == [1]
    assert [(p.entry_id, p.pending_reason) for p in draft.pending] == [(2, "no category")]
    assert "pending" in draft.flags


# --- Section 7: totals ---------------------------------------------------------------------


def test_s7_cap_then_discount_then_total():
    rates = RateTable([RateRow(1, D("180.00"), role="Partner")])
    entries = [entry(i, seconds=36000) for i in range(1, 5)]  # 4 x 10 h x 180 = 7200
    p = policy(currency="EUR", caps={"P": D("6000.00")}, discount_percent=D("5"))
    draft = price_invoice(entries, policy=p, rates=rates, client=CLIENT)
    assert draft.subtotal == D("7200.00")
    assert draft.adjustments == D("-1200.00")
    assert draft.discount == D("-300.00")  # 5% of (7200 - 1200)
    assert draft.total == D("5700.00")
    assert [ln.description for ln in draft.lines[-2:]] == [
        "Not-to-exceed adjustment (Project P)",
        "Discount (5%)",
    ]
    assert draft.flags == ["cap_applied"]


def test_s7_cap_not_reached_adds_nothing():
    draft = price_invoice(
        [entry(1)], policy=policy(caps={"P": D("1000")}), rates=ROLE_RATE, client=CLIENT
    )
    assert (draft.adjustments, draft.flags, len(draft.lines)) == (D(0), [], 1)


def test_s7_discount_rounds_half_up():
    rates = RateTable([RateRow(1, D("0.50"), role="Partner")])
    # 1 h x 0.50 = 0.50; 5% = 0.025 -> 0.03
    draft = price_invoice(
        [entry(1)], policy=policy(discount_percent=D("5")), rates=rates, client=CLIENT
    )
    assert (draft.discount, draft.total) == (D("-0.03"), D("0.47"))


def test_s7_zero_total_with_billable_entries_is_flagged():
    rates = RateTable([RateRow(1, D("0.00"), role="Partner")])
    draft = price_invoice([entry(1)], policy=policy(), rates=rates, client=CLIENT)
    assert draft.total == 0 and draft.flags == ["zero_total"]


def test_s7_zero_decimal_currencies():
    assert (currency_places("JPY"), currency_places("krw"), currency_places("EUR")) == (0, 0, 2)
    rates = RateTable([RateRow(1, D("15000"), role="Partner")])
    # 0.3333 h x 15000 = 4999.5 -> 5000 yen
    draft = price_invoice(
        [entry(1, seconds=1200)], policy=policy(currency="JPY"), rates=rates, client=CLIENT
    )
    assert (draft.lines[0].quantity, draft.lines[0].amount) == (D("0.3333"), D("5000"))


def test_s7_total_is_sum_of_lines():
    entries = [entry(i, seconds=600 + i * 37) for i in range(1, 30)]
    draft = price_invoice(
        entries, policy=policy(discount_percent=D("3.5")), rates=ROLE_RATE, client=CLIENT
    )
    assert draft.total == sum(ln.amount for ln in draft.lines)


@pytest.mark.parametrize(
    "value, places, expected",
    [("2.345", 2, "2.35"), ("0.125", 2, "0.13"), ("2.5", 0, "3"), ("2.344999", 2, "2.34")],
)
def test_s0_round_means_half_up(value, places, expected):
    assert round_money(D(value), "JPY" if places == 0 else "USD") == D(expected)


def test_s0_fraction_rounding_half_up():
    assert fraction_to_decimal(Fraction(1, 8), 2) == D("0.13")
    assert fraction_to_decimal(Fraction(1, 3), 4) == D("0.3333")
    assert fraction_to_decimal(Fraction(2, 3), 4) == D("0.6667")


def test_s6_line_derivation_names_the_one_rate_row_of_its_entries():
    # Same value, different rows (Ana's own rate, Ben's role rate): two lines, each explained.
    rates = RateTable([RateRow(1, D("150.00"), person=ANA), RateRow(2, D("150.00"), role="Senior")])
    entries = [entry(1), entry(2, person=BEN, name="Ben Okafor", role="Senior")]
    draft = price_invoice(
        entries, policy=policy(group_lines_by=GroupBy.CATEGORY), rates=rates, client=CLIENT
    )
    assert [(ln.derivation["rate"]["row"], ln.quantity) for ln in draft.lines] == [
        (1, D("1.0000")),
        (2, D("1.0000")),
    ]


@pytest.mark.parametrize("value, stored", [("0.6995", "0.699"), ("0.7", "0.700"), ("1", "1.000")])
def test_s2_4_model_confidence_is_never_rounded_over_the_threshold(value, stored):
    from invoices.core.rounding import round_confidence

    assert round_confidence(D(value)) == D(stored)
    assert (round_confidence(D(value)) >= D("0.7")) is (D(value) >= D("0.7"))


# --- Section 10.4: adjustments ---------------------------------------------------------------


def written(billed_seconds, source_seconds=3600, reason="first matter of its kind", by="Rita"):
    return Adjustment(
        billed_seconds=billed_seconds, source_seconds=source_seconds, reason=reason, made_by=by
    )


def charge(id, kind, quantity, unit_price, **kw):
    values = dict(description=f"{kind} {id}", reason=f"reason {id}", made_by="Rita")
    values.update(kw)
    return ManualCharge(id=id, kind=kind, quantity=D(quantity), unit_price=D(unit_price), **values)


def test_s10_4_write_down_bills_the_adjusted_hours_and_shows_standard_value_and_adjustment():
    draft = price_invoice(
        [entry(1, adjustment=written(1800)), entry(2)],
        policy=policy(),
        rates=ROLE_RATE,
        client=CLIENT,
    )
    adjusted, plain = draft.lines
    assert (adjusted.quantity, adjusted.amount) == (D("0.5000"), D("75.00"))
    assert adjusted.entries[0].billed_seconds == 1800 and adjusted.entries[0].raw_seconds == 3600
    assert adjusted.derivation["adjustment"] == {
        "standard_minutes": "60",
        "standard_quantity": "1.0000",
        "standard_amount": "150.00",
        "amount": "-75.00",
        "entries": [
            {
                "entry": 1,
                "kind": "write-down",
                "standard_minutes": "60",
                "billed_minutes": "30",
                "by": "Rita",
                "reason": "first matter of its kind",
            }
        ],
        "summary": "standard 1.0000 h x 150.00 = 150.00; adjusted to 0.5000 h = 75.00 "
        "(-75.00 USD) by Rita: first matter of its kind",
    }
    assert adjusted.derivation["arithmetic"] == "0.5000 h x 150.00 = 75.00 USD"
    assert "adjustment" not in plain.derivation
    assert (draft.subtotal, draft.total) == (D("225.00"), D("225.00"))


def test_s10_4_write_up_is_shown_as_a_positive_adjustment():
    line = price_invoice(
        [entry(1, adjustment=written(5400))], policy=policy(), rates=ROLE_RATE, client=CLIENT
    ).lines[0]
    assert (line.quantity, line.amount) == (D("1.5000"), D("225.00"))
    assert line.derivation["adjustment"]["amount"] == "+75.00"
    assert line.derivation["adjustment"]["entries"][0]["kind"] == "write-up"


def test_s10_4_a_written_down_entry_is_not_rounded_again():
    # 50 min with a 30 min minimum and 15 min increments bills 60 min; written down to
    # 12 min, it bills 12 min: the reviewer set the billed time.
    p = policy(increment_minutes=15, minimum_minutes=30)
    line = price_invoice(
        [entry(1, seconds=3000, adjustment=written(720, source_seconds=3000))],
        policy=p,
        rates=ROLE_RATE,
        client=CLIENT,
    ).lines[0]
    assert (line.quantity, line.amount) == (D("0.2000"), D("30.00"))
    assert line.derivation["adjustment"]["standard_quantity"] == "1.0000"
    assert line.entries[0].billed_seconds == 720


def test_s10_4_with_locus_line_only_unadjusted_entries_are_rounded_by_the_line():
    # 7 + 7 min round once to 15 min; the entry written down to 10 min adds 10: 25 min.
    p = policy(
        increment_minutes=15, rounding_locus=RoundingLocus.LINE, group_lines_by=GroupBy.CATEGORY
    )
    entries = [
        entry(1, seconds=420),
        entry(2, seconds=420),
        entry(3, seconds=1200, adjustment=written(600, source_seconds=1200)),
    ]
    line = price_invoice(entries, policy=p, rates=ROLE_RATE, client=CLIENT).lines[0]
    assert line.quantity == D("0.4167")  # 25 / 60
    # standard: 7 + 7 + 20 = 34 -> 45 min
    assert line.derivation["adjustment"]["standard_quantity"] == "0.7500"


def test_s10_4_caps_and_discount_apply_after_adjustments():
    rates = RateTable([RateRow(1, D("180.00"), role="Partner")])
    entries = [entry(i, seconds=36000) for i in range(1, 4)]
    entries.append(entry(4, seconds=36000, adjustment=written(18000, source_seconds=36000)))
    p = policy(currency="EUR", caps={"P": D("6000.00")}, discount_percent=D("5"))
    draft = price_invoice(entries, policy=p, rates=rates, client=CLIENT)
    # 3 x 10 h + 5 h = 35 h x 180 = 6300; cap 6000: -300; 5% of 6000 = -300
    assert (draft.subtotal, draft.adjustments, draft.discount, draft.total) == (
        D("6300.00"),
        D("-300.00"),
        D("-300.00"),
        D("5700.00"),
    )
    assert [ln.kind for ln in draft.lines][-2:] == ["cap", "discount"]


def test_s10_4_a_projects_manual_lines_count_towards_its_cap():
    fee = charge(7, "fixed_fee", "1", "100.00", project=PROJECT, project_code="P")
    p = policy(caps={"P": D("200.00")})
    draft = price_invoice([entry(1)], policy=p, rates=ROLE_RATE, client=CLIENT, manual=[fee])
    assert (draft.subtotal, draft.adjustments, draft.total) == (
        D("250.00"),
        D("-50.00"),
        D("200.00"),
    )


def test_s10_4_manual_lines_and_credits_add_up_after_time_and_before_the_discount():
    manual = [
        charge(1, "fixed_fee", "1", "500.00", reason="agreed setup fee", category="development"),
        charge(2, "expense", "3", "12.50", description="Courier", billing_code="E107"),
        charge(3, "credit", "1", "-100.00", description="Goodwill credit"),
    ]
    draft = price_invoice(
        [entry(1)],
        policy=policy(discount_percent=D("10")),
        rates=ROLE_RATE,
        client=CLIENT,
        manual=manual,
    )
    assert [
        (ln.kind, ln.description, ln.quantity, ln.unit_price, ln.amount) for ln in draft.lines
    ] == [
        ("time", "note 1", D("1.0000"), D("150.00"), D("150.00")),
        ("fixed_fee", "fixed_fee 1", D("1.0000"), D("500.00"), D("500.00")),
        ("expense", "Courier", D("3.0000"), D("12.50"), D("37.50")),
        ("credit", "Goodwill credit", D("1.0000"), D("-100.00"), D("-100.00")),
        ("discount", "Discount (10%)", D("1"), D("-58.75"), D("-58.75")),
    ]
    # 150 + 500 + 37.50 - 100 = 587.50; 10% = 58.75
    assert (draft.subtotal, draft.discount, draft.total) == (
        D("587.50"),
        D("-58.75"),
        D("528.75"),
    )
    fee, expense = draft.lines[1], draft.lines[2]
    assert fee.derivation == {
        "manual_line": {"id": 1, "kind": "fixed_fee", "by": "Rita", "reason": "agreed setup fee"},
        "note": "manual line: fixed fee, by Rita, agreed setup fee",
        "arithmetic": "1.0000 x 500.00 = 500.00 USD",
    }
    assert (fee.category, expense.billing_code, fee.entries) == ("development", "E107", [])


def test_s10_4_a_draft_of_manual_lines_only_is_priced():
    draft = price_invoice(
        [],
        policy=policy(),
        rates=ROLE_RATE,
        client=CLIENT,
        manual=[charge(1, "expense", "2", "9.99")],
    )
    assert [(ln.kind, ln.amount) for ln in draft.lines] == [("expense", D("19.98"))]
    assert (draft.subtotal, draft.total, draft.flags) == (D("19.98"), D("19.98"), [])


@pytest.mark.parametrize(
    "kind, price", [("credit", "100.00"), ("expense", "-1.00"), ("fixed_fee", "-0.01")]
)
def test_s10_4_a_manual_line_of_the_wrong_sign_is_refused(kind, price):
    with pytest.raises(PricingError, match="wrong sign"):
        price_invoice(
            [entry(1)],
            policy=policy(),
            rates=ROLE_RATE,
            client=CLIENT,
            manual=[charge(1, kind, "1", price)],
        )


def test_s10_4_a_credit_never_makes_the_total_negative():
    with pytest.raises(PricingError, match="negative"):
        price_invoice(
            [entry(1)],
            policy=policy(),
            rates=ROLE_RATE,
            client=CLIENT,
            manual=[charge(1, "credit", "1", "-150.01")],
        )


def test_s10_4_hours_changed_at_the_source_after_a_write_down_wait_for_review():
    draft = price_invoice(
        [entry(1, seconds=5400, adjustment=written(1800, source_seconds=3600)), entry(2)],
        policy=policy(),
        rates=ROLE_RATE,
        client=CLIENT,
    )
    assert [p.entry_id for ln in draft.lines for p in ln.entries] == [2]
    assert [(p.entry_id, p.state, p.pending_reason) for p in draft.pending] == [
        (1, "pending", "hours changed at the source after a write-down (was 1 h, now 1.5 h)")
    ]
    assert "pending" in draft.flags


def test_s10_4_an_adjustment_of_non_billable_time_bills_nothing():
    draft = price_invoice(
        [entry(1, billable=False, adjustment=written(1800))],
        policy=policy(show_non_billable=True),
        rates=ROLE_RATE,
        client=CLIENT,
    )
    assert [(ln.kind, ln.quantity, ln.amount) for ln in draft.lines] == [
        ("no_charge", D("1.0000"), D(0))
    ]
