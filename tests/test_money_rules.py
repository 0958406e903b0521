"""Pricing rules that a plausible mistake would break, each with cases only the right rule passes.

Pure: no database. Sections refer to `../shared/specs/billing-semantics.md`. Each table holds at
least one case where the wrong rule gives a different number (half-even rounding of an exact half
step, the amount from exact hours instead of the shown quantity, the minimum applied after the
increment), so breaking the rule in `invoices/core` fails a test; `bin/mutation-score` checks that
for every other small change of the core too.
"""

import datetime as dt
from decimal import Decimal as D
from fractions import Fraction

import pytest

from invoices.core.policy import GroupBy, Policy, RoundingLocus, RoundingMode
from invoices.core.pricing import PricedEntry, billed_minutes, price_invoice
from invoices.core.rates import RateRow, RateTable
from invoices.core.rounding import round_money, round_to_increment

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
