"""Pricing rules that a plausible mistake would break, each with cases only the right rule passes.

Pure: no database. Sections refer to `../shared/specs/billing-semantics.md`. Each table holds at
least one case where the wrong rule gives a different number (half-even rounding of an exact half
step, the amount from exact hours instead of the shown quantity, the minimum applied after the
increment), so breaking the rule in `invoices/core` fails a test; `bin/mutation-score` checks that
for every other small change of the core too.
"""

import datetime as dt
from dataclasses import asdict, replace
from decimal import Decimal as D
from fractions import Fraction

import pytest

from invoices.core.classify import (
    CategoryInfo,
    Decision,
    EntryFacts,
    ManualDecision,
    ModelAnswer,
    NotesPatternRefused,
    Rule,
    build_memory,
    classify,
    compile_notes_pattern,
    order_rules,
)
from invoices.core.policy import GroupBy, Policy, RoundingLocus, RoundingMode
from invoices.core.pricing import (
    EntryPlacement,
    PricedEntry,
    PricingError,
    _whole_seconds,
    billed_minutes,
    price_invoice,
)
from invoices.core.rates import RateLevel, RateRow, RateTable, find_overlaps
from invoices.core.rounding import money_str, round_money, round_to_increment

CLIENT, PROJECT = 1, 10
DAY = dt.date(2026, 10, 5)
UP, NEAREST, DOWN = RoundingMode.UP, RoundingMode.NEAREST, RoundingMode.DOWN


def priced(id: int, seconds: int, *, category: str = "development") -> PricedEntry:
    return PricedEntry(
        id=id,
        date=DAY,
        seconds=seconds,
        person=100,
        person_name="Ana Pereira",
        role="Partner",
        project=PROJECT,
        project_code="P",
        project_name="Project P",
        task="",
        category=category,
        category_name="Development",
        description=f"note {id}",
        source_label="rule #1",
        billable=True,
        billing_code="",
        needs_review=False,
    )


def price(entries, *, rate: str = "150.00", **policy_fields):
    policy = Policy(currency=policy_fields.pop("currency", "USD"), **policy_fields)
    rates = RateTable([RateRow(1, D(rate), role="Partner")])
    return price_invoice(entries, policy=policy, rates=rates, client=CLIENT)


# --- Section 4 step 3: "nearest" rounds an exact half step up (ROUND_HALF_UP) ---------------
# Half-even would send 2.5 steps to 2 and 4.5 to 4; half-down would send every half down.


@pytest.mark.parametrize(
    "minutes, increment, expected",
    [
        (Fraction(15), 6, 18),  # 2.5 steps: half up 3 (half-even would say 2 -> 12)
        (Fraction(27), 6, 30),  # 4.5 steps: half up 5 (half-even 4 -> 24)
        (Fraction(9), 6, 12),  # 1.5 steps: both give 2, kept so the table shows the pattern
        (Fraction(15, 2), 15, 15),  # 7.5 min on 15: 0.5 step goes up to one step, not zero
        (Fraction(45, 2), 15, 30),  # 22.5 min: 1.5 steps -> 2
        (Fraction(899, 60), 6, 12),  # 14:59 is below the half step: down
        (Fraction(901, 60), 6, 18),  # 15:01 is above it: up
        (Fraction(3), 6, 6),  # exactly half of one step: up to one step
        (Fraction(18), 6, 18),  # already on a step: unchanged
        (Fraction(0), 6, 0),  # nothing stays nothing
    ],
)
def test_s4_3_nearest_rounds_an_exact_half_step_up(minutes, increment, expected):
    assert round_to_increment(minutes, increment, NEAREST) == expected


@pytest.mark.parametrize(
    "minutes, increment, mode, expected",
    [
        (Fraction(61, 5), 6, UP, 18),  # 12.2 min: up to the next step
        (Fraction(12), 6, UP, 12),  # on a step: up leaves it
        (Fraction(1, 60), 6, UP, 6),  # one second: a whole step
        (Fraction(89, 5), 6, DOWN, 12),  # 17.8 min: down to the step below
        (Fraction(18), 6, DOWN, 18),  # on a step: down leaves it
        (Fraction(59, 12), 6, DOWN, 0),  # under one step: nothing
        (Fraction(7), 0, NEAREST, 7),  # no increment: exact minutes
        (Fraction(7, 3), 0, UP, Fraction(7, 3)),  # no increment keeps fractions
    ],
)
def test_s4_3_up_and_down_modes(minutes, increment, mode, expected):
    assert round_to_increment(minutes, increment, mode) == expected


def test_s4_3_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown rounding mode 'sideways'"):
        round_to_increment(Fraction(7), 6, "sideways")


def test_s4_3_nearest_half_step_reaches_the_amount():
    # 15 min on a 6-minute increment bills 18 min = 0.3 h x 150 = 45.00 (not 0.2 h = 30.00).
    draft = price([priced(1, 900)], increment_minutes=6, rounding_mode=NEAREST)
    line = draft.lines[0]
    assert (line.quantity, line.amount, draft.total) == (D("0.3000"), D("45.00"), D("45.00"))
    assert line.entries[0].billed_seconds == 1080
    assert line.derivation["billed_minutes"] == "18"


def test_s4_line_locus_nearest_rounds_the_sum_half_up():
    # Locus line: 7.5 + 7.5 = 15 min summed, then rounded once: 2.5 steps -> 18 min.
    entries = [priced(1, 450), priced(2, 450)]
    draft = price(
        entries,
        increment_minutes=6,
        rounding_mode=NEAREST,
        rounding_locus=RoundingLocus.LINE,
        group_lines_by=GroupBy.CATEGORY,
    )
    line = draft.lines[0]
    assert (line.quantity, line.amount) == (D("0.3000"), D("45.00"))
    # Each entry keeps its own unrounded minutes (section 4: both durations are kept).
    assert [p.billed_seconds for p in line.entries] == [450, 450]
    assert line.derivation["billed_minutes"] == "18"


def test_s4_line_locus_without_increment_sums_exact_minutes():
    entries = [priced(1, 450), priced(2, 470)]
    draft = price(entries, rounding_locus=RoundingLocus.LINE, group_lines_by=GroupBy.CATEGORY)
    # 920 s = 0.25555.. h -> 0.2556 h; 0.2556 x 150 = 38.34
    assert (draft.lines[0].quantity, draft.lines[0].amount) == (D("0.2556"), D("38.34"))


# --- Section 6: the amount is computed from the shown quantity ----------------------------
# quantity = exact hours rounded to 4 places; amount = round(quantity x unit price, places).
# Multiplying the exact hours instead gives a different cent in each case below.


@pytest.mark.parametrize(
    "seconds, rate, currency, quantity, amount",
    [
        (600, "225.55", "USD", "0.1667", "37.60"),  # exact 1/6 h x 225.55 = 37.5916.. -> 37.59
        (1200, "15000.00", "JPY", "0.3333", "5000"),  # 4999.5 yen, half up (rates: 2 places)
        (10, "150.00", "USD", "0.0028", "0.42"),  # exact 1/360 h x 150 = 0.4166.. -> 0.42 too
        (2400, "225.55", "USD", "0.6667", "150.37"),  # 40 min
        (100, "1000.00", "USD", "0.0278", "27.80"),  # exact 27.777.. -> 27.78
        (3600, "150.00", "USD", "1.0000", "150.00"),
    ],
)
def test_s6_amount_is_shown_quantity_times_unit_price(seconds, rate, currency, quantity, amount):
    line = price([priced(1, seconds)], rate=rate, currency=currency).lines[0]
    assert (line.quantity, line.unit_price, line.amount) == (D(quantity), D(rate), D(amount))
    assert line.derivation["arithmetic"] == f"{quantity} h x {rate} = {amount} {currency}"


def test_s6_every_line_multiplies_out_as_quickbooks_checks_it():
    # QuickBooks rejects a line whose Amount is not Qty x UnitPrice: check a spread of durations.
    entries = [priced(i, 60 * i + 7 * i) for i in range(1, 60)]
    draft = price(entries, rate="225.55")
    assert len(draft.lines) == 59
    for line in draft.lines:
        assert line.amount == round_money(line.quantity * line.unit_price, "USD"), line
    assert draft.total == sum(line.amount for line in draft.lines)


def test_s6_grouped_line_quantity_is_the_rounded_sum_not_a_sum_of_rounded_hours():
    # Three 10-minute entries on one category line: 0.5 h exactly (three times 0.1667 would
    # show 0.5001 h and bill 112.80 instead of 112.78).
    entries = [priced(i, 600) for i in (1, 2, 3)]
    draft = price(entries, rate="225.55", group_lines_by=GroupBy.CATEGORY)
    line = draft.lines[0]
    assert (line.quantity, line.amount) == (D("0.5000"), D("112.78"))


# --- Section 4 step 2 before step 3: the minimum, then the increment ------------------------
# Applying the minimum after rounding gives a different duration in each discriminating row.


@pytest.mark.parametrize(
    "seconds, minimum, increment, mode, minutes",
    [
        (120, 10, 6, UP, 12),  # 2 -> 10 -> up 12 (minimum after rounding: 10)
        (120, 10, 6, NEAREST, 12),  # 10/6 = 1.67 steps -> 12 (after: round(2) = 0 -> 10)
        (120, 10, 6, DOWN, 6),  # 10 -> down 6, as the spec orders it (after: 10)
        (120, 9, 6, NEAREST, 12),  # 9 is 1.5 steps: half up 12 (after: 9)
        (120, 10, 15, UP, 15),  # 10 -> 15 either way
        (720, 10, 6, UP, 12),  # longer than the minimum: the minimum does nothing
        (300, 10, 0, UP, 10),  # no increment: the minimum alone
        (601, 10, 0, UP, Fraction(601, 60)),  # over the minimum, exact seconds kept
        (0, 6, 6, UP, 6),  # a zero-length billable entry bills the minimum
    ],
)
def test_s4_2_minimum_applies_before_rounding(seconds, minimum, increment, mode, minutes):
    policy = Policy("USD", minimum_minutes=minimum, increment_minutes=increment, rounding_mode=mode)
    assert billed_minutes(seconds, policy) == minutes


def test_s4_2_minimum_before_rounding_reaches_the_amount():
    # 2 min, minimum 10, 6-minute increment up: 12 min = 0.2 h x 150 = 30.00 (after: 25.00).
    draft = price([priced(1, 120)], minimum_minutes=10, increment_minutes=6)
    line = draft.lines[0]
    assert (line.quantity, line.amount) == (D("0.2000"), D("30.00"))
    assert line.entries[0].raw_seconds == 120
    assert line.entries[0].billed_seconds == 720
    assert line.derivation["raw_minutes"] == "2"
    assert line.derivation["rounding"] == {
        "increment_minutes": 6,
        "mode": "up",
        "locus": "entry",
        "minimum_minutes": 10,
    }


def test_s4_2_line_locus_applies_the_minimum_per_entry_then_rounds_the_sum():
    # Two 2-minute entries, minimum 10: 10 + 10 = 20 min, rounded once up to 24 min = 0.4 h.
    entries = [priced(1, 120), priced(2, 120)]
    draft = price(
        entries,
        minimum_minutes=10,
        increment_minutes=6,
        rounding_locus=RoundingLocus.LINE,
        group_lines_by=GroupBy.CATEGORY,
    )
    line = draft.lines[0]
    assert (line.quantity, line.amount) == (D("0.4000"), D("60.00"))
    assert [p.billed_seconds for p in line.entries] == [600, 600]


# --- Whole lines: every field a line stores, so no part of its pricing can drift unseen -------
# These cases were added for survivors of `bin/mutation-score`: a change to any stored field of
# a line, a placement or a derivation must fail a test.

BEN = 101
OCTOBER = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


def entry_of(id: int, seconds: int, **fields) -> PricedEntry:
    return replace(priced(id, seconds), **fields)


def placed(entry_id: int, state: str, raw_seconds: int, **fields) -> dict:
    """A placement as `asdict` shows it inside a line."""
    return asdict(EntryPlacement(entry_id, state, raw_seconds, **fields))


def test_s6_time_line_stores_its_figures_placements_and_derivation():
    # 10 + 25 min, each up to 6 min: 12 + 30 = 42 min = 0.7 h; project rate 200.00 x 1.5 = 300.00.
    rates = RateTable(
        [
            RateRow(
                7,
                D("200.00"),
                client=CLIENT,
                project=PROJECT,
                valid_from=OCTOBER[0],
                valid_to=OCTOBER[1],
            )
        ]
    )
    entries = [
        entry_of(2, 1500, date=DAY + dt.timedelta(days=1), billing_code="DEV"),
        entry_of(1, 600, billing_code="DEV"),
    ]
    policy = Policy(
        "USD",
        increment_minutes=6,
        rate_multipliers={"development": D("1.5")},
        group_lines_by=GroupBy.CATEGORY_PERSON,
    )
    draft = price_invoice(entries, policy=policy, rates=rates, client=CLIENT)
    (line,) = draft.lines
    stored = asdict(line)
    del stored["sort_key"]
    assert stored == {
        "kind": "time",
        "description": "Development - Ana Pereira",
        "quantity": D("0.7000"),
        "unit_price": D("300.00"),
        "amount": D("210.00"),
        "category": "development",
        "billing_code": "DEV",
        "project": PROJECT,
        "person": 100,
        "first_date": DAY,
        "project_code": "P",
        "project_name": "Project P",
        "entries": [
            placed(2, "billed", 1500, billed_seconds=1800),
            placed(1, "billed", 600, billed_seconds=720),
        ],
        "derivation": {
            "entries": 2,
            "raw_minutes": "35",
            "classified_by": {"rule #1": 2},
            "billed_minutes": "42",
            "rate": {
                "row": 7,
                "for": "project P",
                "level": 3,
                "level_label": "3. project",
                "rate": "200.00",
                "from": "2026-10-01",
                "to": "2026-10-31",
            },
            "multiplier": "1.5",
            "unit_price": "300.00",
            "rounding": {
                "increment_minutes": 6,
                "mode": "up",
                "locus": "entry",
                "minimum_minutes": 0,
            },
            "arithmetic": "0.7000 h x 300.00 = 210.00 USD",
        },
    }
    assert (draft.subtotal, draft.total, draft.flags) == (D("210.00"), D("210.00"), [])


@pytest.mark.parametrize("group_by", [GroupBy.CATEGORY, GroupBy.TASK])
def test_s6_lines_grouped_across_people_name_no_person(group_by):
    entries = [entry_of(1, 3600), entry_of(2, 3600, person=BEN, person_name="Ben Okafor")]
    shown = price(
        entries + [entry_of(3, 1800, billable=False)],
        group_lines_by=group_by,
        show_non_billable=True,
    )
    assert [(ln.kind, ln.person, ln.quantity, ln.amount) for ln in shown.lines] == [
        ("time", None, D("2.0000"), D("300.00")),
        ("no_charge", None, D("0.5000"), D(0)),
    ]


def test_s6_no_charge_lines_store_raw_hours_and_their_entries():
    # Non-billable entries first, so none of them can stop the billable one from being priced.
    entries = [
        entry_of(
            2, 1800, billable=False, category="internal-meeting", category_name="Internal meeting"
        ),
        entry_of(
            3,
            900,
            billable=False,
            category="internal-meeting",
            category_name="Internal meeting",
            date=DAY + dt.timedelta(days=1),
        ),
        entry_of(1, 3600),
    ]
    draft = price(entries, show_non_billable=True)
    free = [asdict(ln) for ln in draft.lines if ln.kind == "no_charge"]
    for line in free:
        del line["sort_key"]
    common = {
        "kind": "no_charge",
        "unit_price": D(0),
        "amount": D(0),
        "category": "internal-meeting",
        "billing_code": "",
        "project": PROJECT,
        "person": 100,
        "project_code": "P",
        "project_name": "Project P",
    }
    assert free == [
        {
            **common,
            "description": "note 2 (No charge)",
            "quantity": D("0.5000"),
            "first_date": DAY,
            "entries": [placed(2, "no_charge", 1800)],
            "derivation": {
                "entries": 1,
                "raw_minutes": "30",
                "classified_by": {"rule #1": 1},
                "note": "non-billable: raw hours shown, no charge",
            },
        },
        {
            **common,
            "description": "note 3 (No charge)",
            "quantity": D("0.2500"),
            "first_date": DAY + dt.timedelta(days=1),
            "entries": [placed(3, "no_charge", 900)],
            "derivation": {
                "entries": 1,
                "raw_minutes": "15",
                "classified_by": {"rule #1": 1},
                "note": "non-billable: raw hours shown, no charge",
            },
        },
    ]
    assert (draft.total, [p.entry_id for p in draft.lines[0].entries]) == (D("150.00"), [1])


def test_s6_pending_and_unpriced_entries_never_stop_the_rest():
    rates = RateTable([RateRow(1, D("150.00"), person=100)])  # Ana only: Ben has no rate
    entries = [
        entry_of(4, 700, needs_review=True, review_reason="no category: misc"),
        entry_of(5, 800, person=BEN, person_name="Ben Okafor", role=""),
        entry_of(1, 3600),
    ]
    draft = price_invoice(entries, policy=Policy("USD"), rates=rates, client=CLIENT)
    assert [asdict(p) for p in draft.pending] == [
        placed(4, "pending", 700, pending_reason="no category: misc"),
        placed(
            5,
            "pending",
            800,
            pending_reason="no rate: none of the 9 rate levels covers Ben Okafor on P on "
            "2026-10-05",
        ),
    ]
    assert [(ln.amount, [p.entry_id for p in ln.entries]) for ln in draft.lines] == [
        (D("150.00"), [1])
    ]
    assert (draft.total, draft.flags) == (D("150.00"), ["pending"])
    no_code = price_invoice(
        [entry_of(6, 60, person=BEN, person_name="Ben Okafor", project_code="")],
        policy=Policy("USD"),
        rates=rates,
        client=CLIENT,
    )
    assert no_code.pending[0].pending_reason.endswith(
        "covers Ben Okafor on Project P on 2026-10-05"
    )


def test_s5_rate_effective_on_the_entry_date_at_the_project_level():
    rates = RateTable(
        [
            RateRow(1, D("100.00"), client=CLIENT, project=PROJECT, valid_to=dt.date(2026, 9, 30)),
            RateRow(2, D("120.00"), client=CLIENT, project=PROJECT, valid_from=OCTOBER[0]),
            RateRow(3, D("90.00")),
        ]
    )
    draft = price_invoice(
        [entry_of(1, 3600), entry_of(2, 3600, date=dt.date(2026, 9, 30))],
        policy=Policy("USD"),
        rates=rates,
        client=CLIENT,
    )
    assert [(ln.unit_price, ln.derivation["rate"]["level"]) for ln in draft.lines] == [
        (D("100.00"), 3),
        (D("120.00"), 3),
    ]


# --- Section 7: caps, discount, totals, in full ---------------------------------------------


def test_s7_cap_and_discount_lines_store_their_figures():
    rates = RateTable([RateRow(1, D("180.00"), role="Partner")])
    entries = [
        # A no-charge line dated first sorts before the time lines the caps look at.
        entry_of(9, 600, billable=False, date=DAY - dt.timedelta(days=1)),
        entry_of(1, 36000),  # P: 10 h x 180 = 1800.00, capped at 1500.00
        entry_of(2, 3600, project=11, project_code="Q", project_name="Project Q"),  # Q: 180.00
    ]
    policy = Policy(
        "USD",
        # A (no lines) sorts first; Q is reached exactly, which is not above the cap.
        caps={"A": D("5.00"), "P": D("1500.00"), "Q": D("180.00")},
        discount_percent=D("0.5"),
        show_non_billable=True,
    )
    draft = price_invoice(entries, policy=policy, rates=rates, client=CLIENT)
    adjustments = [asdict(ln) for ln in draft.lines if ln.kind in ("cap", "discount")]
    for line in adjustments:
        del line["sort_key"]
    blank = {
        "category": None,
        "billing_code": "",
        "person": None,
        "first_date": None,
        "project_code": "",
        "project_name": "",
        "entries": [],
    }
    assert adjustments == [
        {
            **blank,
            "kind": "cap",
            "description": "Not-to-exceed adjustment (Project P)",
            "quantity": D(1),
            "unit_price": D("-300.00"),
            "amount": D("-300.00"),
            "project": PROJECT,
            "derivation": {
                "cap": {
                    "project": "P",
                    "amount": "1500.00",
                    "billed": "1800.00",
                    "excess": "300.00",
                },
                "arithmetic": "-(1800.00 - 1500.00) = -300.00 USD",
            },
        },
        {
            **blank,
            "kind": "discount",
            "description": "Discount (0.5%)",
            "quantity": D(1),
            "unit_price": D("-8.40"),
            "amount": D("-8.40"),
            "project": None,
            # 0.5% of (1980.00 - 300.00) = 8.40
            "derivation": {
                "discount": {"percent": "0.5", "base": "1680.00"},
                "arithmetic": "-round(1680.00 x 0.5 / 100) = -8.40 USD",
            },
        },
    ]
    assert (draft.subtotal, draft.adjustments, draft.discount, draft.total) == (
        D("1980.00"),
        D("-300.00"),
        D("-8.40"),
        D("1671.60"),
    )
    assert draft.flags == ["cap_applied"]


def test_s7_a_negative_total_is_refused_by_amount():
    with pytest.raises(PricingError, match=r"^total -75\.00 (USD )?is negative"):
        price([priced(1, 3600)], discount_percent=D("150"))


def test_s7_an_empty_invoice_totals_decimal_zero():
    draft = price([])
    for figure in (draft.subtotal, draft.adjustments, draft.discount, draft.total):
        assert type(figure) is D and figure == 0
    assert (draft.lines, draft.pending, draft.flags) == ([], [], [])


def test_s4_billed_duration_must_be_whole_seconds():
    with pytest.raises(PricingError, match=r"^billed duration 1/120 min is not a whole number"):
        _whole_seconds(Fraction(1, 120))


def test_s4_3_one_minute_increment_rounds_seconds():
    assert billed_minutes(90, Policy("USD", increment_minutes=1)) == 2
    assert billed_minutes(90, Policy("USD", increment_minutes=1, rounding_mode=DOWN)) == 1


@pytest.mark.parametrize(
    "amount, currency, shown",
    [
        ("12.345", "USD", "12.35"),
        ("7", "EUR", "7.00"),
        ("1000.5", "JPY", "1001"),
        ("0", "USD", "0.00"),
    ],
)
def test_s7_money_str_shows_the_currency_places_half_up(amount, currency, shown):
    assert money_str(D(amount), currency) == shown


# --- Section 5: rate levels and overlaps ----------------------------------------------------


@pytest.mark.parametrize(
    "row, level",
    [
        (RateRow(1, D(1), client=CLIENT, project=PROJECT, person=100), 1),
        (RateRow(1, D(1), client=CLIENT, project=PROJECT, role="Partner"), 2),
        (RateRow(1, D(1), client=CLIENT, project=PROJECT), 3),
        (RateRow(1, D(1), client=CLIENT, person=100), 4),
        (RateRow(1, D(1), client=CLIENT, role="Partner"), 5),
        (RateRow(1, D(1), client=CLIENT), 6),
        (RateRow(1, D(1), person=100), 7),
        (RateRow(1, D(1), role="Partner"), 8),
        (RateRow(1, D(1)), 9),
    ],
)
def test_s5_a_rows_level_follows_what_it_names(row, level):
    assert row.level == RateLevel(level)


def test_s5_a_row_naming_person_and_role_is_refused():
    with pytest.raises(ValueError, match="^a rate row names a person or a role, not both$"):
        _ = RateRow(1, D(1), person=100, role="Partner").level


def test_s5_adjacent_date_ranges_do_not_overlap():
    later = RateRow("later", D(2), role="Partner", valid_from=dt.date(2026, 2, 1))
    earlier = RateRow("earlier", D(1), role="Partner", valid_to=dt.date(2026, 1, 31))
    assert find_overlaps([later, earlier]) == []
    assert find_overlaps([earlier, later]) == []


def test_s5_a_person_without_a_role_skips_the_role_levels():
    rates = RateTable([RateRow(3, D("120.00"), client=CLIENT, project=PROJECT)])
    match = rates.resolve(day=DAY, client=CLIENT, project=PROJECT, person=BEN, role="")
    assert (match.row.id, match.level) == (3, RateLevel.PROJECT)


# --- Section 3: the policy as stored on each invoice ----------------------------------------


def test_s3_policy_snapshot_keeps_every_field():
    policy = Policy(
        "EUR",
        increment_minutes=15,
        rounding_mode=NEAREST,
        rounding_locus=RoundingLocus.LINE,
        minimum_minutes=30,
        non_billable_categories=frozenset({"travel", "admin"}),
        billing_codes={"travel": "T1", "dev": "D1"},
        require_billing_codes=True,
        rate_multipliers={"travel": D("0.5")},
        discount_percent=D("2.5"),
        caps={"P": D("1000.00")},
        group_lines_by=GroupBy.CATEGORY_PERSON,
        show_non_billable=True,
        invoice_per_project=True,
        payment_terms_days=45,
        bill_approved_only=True,
    )
    assert policy.snapshot() == {
        "currency": "EUR",
        "rounding": {"increment_minutes": 15, "mode": "nearest", "locus": "line"},
        "minimum_minutes": 30,
        "non_billable_categories": ["admin", "travel"],
        "billing_codes": {"dev": "D1", "travel": "T1"},
        "require_billing_codes": True,
        "rate_multipliers": {"travel": "0.5"},
        "discount_percent": "2.5",
        "caps": {"P": "1000.00"},
        "group_lines_by": "category_person",
        "show_non_billable": True,
        "invoice_per_project": True,
        "payment_terms_days": 45,
        "bill_approved_only": True,
    }


def test_s3_policy_choices_are_values_with_spaces():
    assert GroupBy.choices() == [
        ("entry", "entry"),
        ("category", "category"),
        ("category_person", "category person"),
        ("task", "task"),
    ]
    assert RoundingMode.choices() == [("up", "up"), ("nearest", "nearest"), ("down", "down")]


# --- Section 2: what decides billable (a wrong flag bills or drops a whole entry) -----------

CATS = {
    "development": CategoryInfo("development", "Development", True, billing_code="DEV"),
    "travel": CategoryInfo("travel", "Travel", True),
    "internal-meeting": CategoryInfo("internal-meeting", "Internal meeting", False),
}


def facts(**fields) -> EntryFacts:
    values = dict(
        id=1,
        client=CLIENT,
        project=PROJECT,
        project_billable=True,
        task="",
        notes="misc",
        normalized_notes="misc",
        tracker_billable=True,
    )
    values.update(fields)
    return EntryFacts(**values)


def decide(entry=None, *, policy=None, rules=(), memory=None, **kw) -> Decision:
    return classify(
        entry or facts(),
        policy=policy or Policy("USD"),
        categories=CATS,
        rules=order_rules(rules, CLIENT),
        memory=memory or {},
        **kw,
    )


DEV_RULE = Rule(id=5, category="development", task="Build")


@pytest.mark.parametrize(
    "kwargs, decision",
    [
        # Nothing decides: pending, not billable, with the default reason.
        (
            {},
            Decision(
                None,
                "misc",
                "",
                None,
                None,
                False,
                "",
                True,
                "no category: no rule or approved history matched",
            ),
        ),
        # A reviewer said billable but no category yet: still pending, flag kept.
        (
            {"manual": ManualDecision(billable=True)},
            Decision(
                None,
                "misc",
                "",
                None,
                None,
                True,
                "",
                True,
                "no category: no rule or approved history matched",
            ),
        ),
        # ... unless the tracker calls it non-billable: nothing bills it.
        (
            {"entry": facts(tracker_billable=False), "manual": ManualDecision(billable=True)},
            Decision(
                None,
                "misc",
                "",
                None,
                None,
                False,
                "",
                True,
                "no category: no rule or approved history matched",
            ),
        ),
        # A reviewer said not billable: decided, bills nothing, never pending.
        (
            {"manual": ManualDecision(billable=False, description="Reworded")},
            Decision(None, "Reworded", "manual", None, None, False, "", False, ""),
        ),
        # Non-billable at the project: decided without a category, not by a reviewer.
        (
            {"entry": facts(project_billable=False)},
            Decision(None, "misc", "", None, None, False, "", False, ""),
        ),
        # A rule decides; a reviewer's flag equal to the default keeps the rule as the source.
        (
            {
                "entry": facts(task="build"),
                "rules": [DEV_RULE],
                "manual": ManualDecision(billable=True),
            },
            Decision("development", "misc", "rule", 5, D(1), True, "DEV", False, ""),
        ),
        # A reviewer's flag that differs from the default makes the decision manual.
        (
            {
                "entry": facts(task="build"),
                "rules": [DEV_RULE],
                "manual": ManualDecision(billable=False),
            },
            Decision("development", "misc", "manual", 5, D(1), False, "DEV", False, ""),
        ),
        # A rule naming a category that no longer exists: pending, never billed against it.
        (
            {"entry": facts(task="build"), "rules": [Rule(id=6, category="gone", task="Build")]},
            Decision(
                None,
                "misc",
                "",
                None,
                None,
                False,
                "",
                True,
                "no category: its category no longer exists",
            ),
        ),
        # Disagreeing history: pending with its reason.
        (
            {"memory": build_memory([("misc", "travel"), ("misc", "development")])},
            Decision(
                None,
                "misc",
                "",
                None,
                None,
                False,
                "",
                True,
                "no category: approved history for this note disagrees on the category",
            ),
        ),
        # Empty notes are never matched by memory.
        (
            {"entry": facts(notes="", normalized_notes=""), "memory": {"": "travel"}},
            Decision(
                None,
                "",
                "",
                None,
                None,
                False,
                "",
                True,
                "no category: no rule or approved history matched",
            ),
        ),
        # The model abstains without a note.
        (
            {"model": ModelAnswer(None)},
            Decision(
                None,
                "misc",
                "",
                None,
                None,
                False,
                "",
                True,
                "no category: model abstained: no answer",
            ),
        ),
        # Confidence exactly at the threshold decides.
        (
            {"model": ModelAnswer("travel", "Flight", D("0.7"))},
            Decision("travel", "Flight", "llm", None, D("0.7"), True, "", False, ""),
        ),
        # A billable entry without a code, for a client that requires codes: pending.
        (
            {
                "policy": Policy("USD", require_billing_codes=True),
                "manual": ManualDecision(category="travel", description="Train"),
            },
            Decision(
                "travel",
                "Train",
                "manual",
                None,
                D(1),
                True,
                "",
                True,
                "no billing code for category 'travel' (the client requires one)",
            ),
        ),
    ],
)
def test_s2_decision_in_full(kwargs, decision):
    assert decide(**kwargs) == decision


def test_s2_3_memory_skips_empty_notes_and_keeps_reading():
    assert build_memory([("", "travel"), ("misc", "development")]) == {"misc": "development"}


# --- Section 10.1 and 10.2: late time is billed and flagged, held time is never billed -------

SEPTEMBER = dt.date(2026, 9, 1)


def test_s10_2_held_entries_bill_nothing_and_never_stop_the_rest():
    entries = [
        entry_of(1, 700, hold_reason="invoiced in Harvest"),
        entry_of(2, 800, hold_reason="not approved in Clockify", late_from=SEPTEMBER),
        entry_of(3, 3600),
    ]
    draft = price(entries)
    assert [asdict(p) for p in draft.held] == [
        placed(1, "held", 700, pending_reason="invoiced in Harvest"),
        placed(2, "held", 800, pending_reason="not approved in Clockify", late_from=SEPTEMBER),
    ]
    assert draft.pending == []
    assert [(ln.amount, [p.entry_id for p in ln.entries]) for ln in draft.lines] == [
        (D("150.00"), [3])
    ]
    assert (draft.total, draft.flags) == (D("150.00"), ["held"])
    assert [p.entry_id for p in draft.placements] == [3, 1, 2]


def test_s10_1_late_time_is_billed_with_its_period_on_every_kind_of_placement():
    rates = RateTable([RateRow(1, D("150.00"), person=100)])  # Ben has no rate
    entries = [
        entry_of(1, 3600, late_from=SEPTEMBER),
        entry_of(2, 1800, billable=False, late_from=SEPTEMBER),
        entry_of(3, 60, needs_review=True, review_reason="no category: x", late_from=SEPTEMBER),
        entry_of(4, 60, person=BEN, person_name="Ben Okafor", late_from=SEPTEMBER),
        entry_of(5, 1800),
    ]
    policy = Policy("USD", show_non_billable=True)
    draft = price_invoice(entries, policy=policy, rates=rates, client=CLIENT)
    late = {p.entry_id: p.late_from for p in draft.placements}
    assert late == {1: SEPTEMBER, 2: SEPTEMBER, 3: SEPTEMBER, 4: SEPTEMBER, 5: None}
    by_entry = {ln.entries[0].entry_id: ln for ln in draft.lines}
    assert by_entry[1].derivation["late_time_from"] == ["2026-09"]
    assert by_entry[2].derivation["late_time_from"] == ["2026-09"]
    assert "late_time_from" not in by_entry[5].derivation
    # Late time is billed like any other: 1 h + 0.5 h at 150.00.
    assert draft.total == D("225.00")
    assert draft.flags == ["pending", "late_time"]


# --- Section 6: each derivation says, in words, what its rate row is for ---------------------


@pytest.mark.parametrize(
    "row, said",
    [
        (
            RateRow(1, D(1), client=CLIENT, project=PROJECT, person=100),
            "project P + person Ana Pereira",
        ),
        (
            RateRow(1, D(1), client=CLIENT, project=PROJECT, role="Partner"),
            "project P + role Partner",
        ),
        (RateRow(1, D(1), client=CLIENT, person=100), "person Ana Pereira"),
        (RateRow(1, D(1), client=CLIENT), "client"),
        (RateRow(1, D(1), role="Partner"), "role Partner"),
        (RateRow(1, D(1)), "firm default"),
    ],
)
def test_s6_derivation_says_what_the_rate_row_is_for(row, said):
    draft = price_invoice(
        [priced(1, 3600)], policy=Policy("USD"), rates=RateTable([row]), client=CLIENT
    )
    assert draft.lines[0].derivation["rate"]["for"] == said


def test_s2_required_billing_code_keeps_the_rule_that_decided():
    decision = decide(
        facts(task="build"),
        rules=[Rule(id=8, category="travel", task="Build")],
        policy=Policy("USD", require_billing_codes=True),
    )
    assert decision == Decision(
        "travel",
        "misc",
        "rule",
        8,
        D(1),
        True,
        "",
        True,
        "no billing code for category 'travel' (the client requires one)",
    )


# --- Section 2.2: rule patterns run on RE2, and a refused one is named ----------------------


def test_s2_2_notes_patterns_match_and_refusals_name_the_pattern():
    assert compile_notes_pattern(r"(?i)\bflight\b").search("Flight to NYC") is not None
    assert compile_notes_pattern(r"\bflight\b").search("Flight to NYC") is None
    with pytest.raises(NotesPatternRefused) as backreference:
        compile_notes_pattern(r"(a)\1")
    assert (backreference.value.pattern, backreference.value.reason) == (
        r"(a)\1",
        r"invalid escape sequence: \1",
    )
    assert str(backreference.value) == (
        r"pattern '(a)\1' refused: invalid escape sequence: \1 (rules run on RE2, a "
        "linear-time engine without backreferences, lookahead or lookbehind)"
    )
    with pytest.raises(NotesPatternRefused) as broken:
        compile_notes_pattern("(")
    # Not valid Python either: no word on what RE2 leaves out.
    assert str(broken.value) == "pattern '(' refused: missing ): ("
