"""Parser tables for the values of time-tracker exports (no database)."""

from datetime import date, time
from decimal import Decimal

import pytest

from timesheets.importing.values import (
    EXPECTED_DATES,
    ConflictingDateOrder,
    InvalidValue,
    date_order_evidence,
    format_seconds,
    hours_to_seconds,
    parse_bool,
    parse_date,
    parse_decimal,
    parse_duration_seconds,
    parse_time,
    sniff_date_order,
)

EXPECTED = "YYYY-MM-DD, M/D/YYYY, D.M.YYYY or D-M-YYYY"


def test_expected_dates_are_named_in_messages():
    assert EXPECTED_DATES == EXPECTED


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        # Day-first dotted and dashed dates (Harvest EU exports write 26.01.2015).
        ("26.01.2015", "dmy", date(2015, 1, 26)),
        ("1.2.2026", "dmy", date(2026, 2, 1)),
        ("26-01-2015", "dmy", date(2015, 1, 26)),
        ("01-26-2015", "mdy", date(2015, 1, 26)),
        ("2026-10-02", "mdy", date(2026, 10, 2)),
        ("2026-10-02", "dmy", date(2026, 10, 2)),  # ISO ignores the order
        ("2026-1-5", "mdy", date(2026, 1, 5)),
        (" 2026-09-29 ", "mdy", date(2026, 9, 29)),
        ("10/2/2026", "mdy", date(2026, 10, 2)),
        ("10/02/2026", "mdy", date(2026, 10, 2)),
        ("09/29/2026", "mdy", date(2026, 9, 29)),
        ("2/10/2026", "dmy", date(2026, 10, 2)),
        ("19/02/2026", "dmy", date(2026, 2, 19)),
        ("2/29/2028", "mdy", date(2028, 2, 29)),
    ],
)
def test_parse_date(text, order, expected):
    assert parse_date(text, order=order) == expected


@pytest.mark.parametrize(
    ("text", "order", "message"),
    [
        ("2026-13-45", "mdy", "impossible date '2026-13-45': month must be in 1..12"),
        ("2026-02-30", "mdy", "impossible date '2026-02-30': day is out of range for month"),
        (
            "2/29/2026",
            "mdy",
            "impossible date '2/29/2026' read month-first: day is out of range for month",
        ),
        (
            "13/25/2026",
            "mdy",
            "impossible date '13/25/2026' read month-first: month must be in 1..12",
        ),
        (
            "10/25/2026",
            "dmy",
            "impossible date '10/25/2026' read day-first: month must be in 1..12",
        ),
        (
            "29.09.2026",
            "mdy",
            "impossible date '29.09.2026' read month-first: month must be in 1..12",
        ),
        ("29.09-2026", "dmy", f"not a date: '29.09-2026' (expected {EXPECTED})"),
        ("10/02/26", "mdy", f"not a date: '10/02/26' (expected {EXPECTED})"),
        ("26.01.15", "dmy", f"not a date: '26.01.15' (expected {EXPECTED})"),
        ("", "mdy", f"not a date: '' (expected {EXPECTED})"),
        ("yesterday", "mdy", f"not a date: 'yesterday' (expected {EXPECTED})"),
    ],
)
def test_parse_date_rejects(text, order, message):
    with pytest.raises(InvalidValue) as raised:
        parse_date(text, order=order)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:15:00 AM", time(9, 15)),
        ("01:45:00 PM", time(13, 45)),
        ("3:00pm", time(15, 0)),
        ("3:00 p.m.", time(15, 0)),
        ("12:00 AM", time(0, 0)),
        ("12:30:15 PM", time(12, 30, 15)),
        ("11:59 pm", time(23, 59)),
        ("13:55:00", time(13, 55)),
        ("15:00", time(15, 0)),
        ("0:05", time(0, 5)),
        ("23:59:59", time(23, 59, 59)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("13:00 PM", "impossible time '13:00 PM': a 12-hour clock runs from 1 to 12"),
        ("0:30 AM", "impossible time '0:30 AM': a 12-hour clock runs from 1 to 12"),
        ("24:00", "impossible time '24:00': hour must be in 0..23"),
        ("09:60", "impossible time '09:60': minute must be in 0..59"),
        ("9", "not a time: '9' (expected HH:MM, HH:MM:SS or 9:15 AM)"),
        ("", "not a time: '' (expected HH:MM, HH:MM:SS or 9:15 AM)"),
        ("9.15", "not a time: '9.15' (expected HH:MM, HH:MM:SS or 9:15 AM)"),
    ],
)
def test_parse_time_rejects(text, message):
    with pytest.raises(InvalidValue) as raised:
        parse_time(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1:30:00", 5400),
        ("04:00:00", 14400),
        ("00:03:00", 180),
        ("0:40", 2400),
        ("12:05", 43500),
        ("1:00:01", 3601),
        ("1.75", 6300),
        ("1,75", 6300),
        ("0.17", 612),
        ("0,10", 360),
        ("0.67", 2412),
        ("3", 10800),
        (".5", 1800),
        ("0", 0),
        ("0:00:00", 0),
        ("24:00:00", 86400),
        ("24", 86400),
        # Not whole seconds: rounded half up (banker's rounding would give 4 for 4.5 s).
        ("0.333", 1199),  # 1198.8 s
        ("0.00125", 5),  # 4.5 s
        ("0.0001", 0),  # 0.36 s
    ],
)
def test_parse_duration_seconds(text, seconds):
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1.5", "negative duration '-1.5'"),
        ("-0:30", "negative duration '-0:30'"),
        ("30.00", "duration '30.00' is 30:00:00, over the 24 hours one entry can last"),
        ("24:00:01", "duration '24:00:01' is 24:00:01, over the 24 hours one entry can last"),
        ("24,01", "duration '24,01' is 24:00:36, over the 24 hours one entry can last"),
        ("1:75", "not a duration: '1:75' (minutes and seconds run to 59)"),
        ("1:30:60", "not a duration: '1:30:60' (minutes and seconds run to 59)"),
        ("1h 30m", "not a duration: '1h 30m' (expected H:MM:SS, H:MM or decimal hours)"),
        ("1,234.5", "not a duration: '1,234.5' (expected H:MM:SS, H:MM or decimal hours)"),
        ("", "not a duration: '' (expected H:MM:SS, H:MM or decimal hours)"),
    ],
)
def test_parse_duration_rejects(text, message):
    with pytest.raises(InvalidValue) as raised:
        parse_duration_seconds(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("hours", "seconds"),
    [
        (Decimal("0.25"), 900),
        (Decimal("7.5"), 27000),
        (Decimal("0.000138"), 0),  # 0.4968 s
        (Decimal("0.000139"), 1),  # 0.5004 s
        (Decimal("0.00125"), 5),  # exactly 4.5 s
        (Decimal("0.00375"), 14),  # exactly 13.5 s
    ],
)
def test_hours_to_seconds_rounds_half_up(hours, seconds):
    assert hours_to_seconds(hours) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00:00"), (612, "0:10:12"), (108000, "30:00:00"), (-90, "-0:01:30")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", True),
        ("yes", True),
        ("YES", True),
        (" Yes ", True),
        ("true", True),
        ("True", True),
        ("1", True),
        ("No", False),
        ("no", False),
        ("FALSE", False),
        ("0", False),
        # Localized exports [G]: German, French, Spanish, Portuguese, Dutch.
        ("Ja", True),
        ("Nein", False),
        ("oui", True),
        ("Non", False),
        ("Sí", True),
        ("Sim", True),
        ("Não", False),
        ("nee", False),
    ],
)
def test_parse_bool(text, expected):
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "Y", "N", "maybe", "2", "Yes please", "oui non"])
def test_parse_bool_rejects(text):
    with pytest.raises(InvalidValue) as raised:
        parse_bool(text)
    assert str(raised.value) == f"not a yes/no value: {text!r} (expected Yes or No)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.75", Decimal("1.75")),
        ("1,75", Decimal("1.75")),
        ("-0.5", Decimal("-0.5")),
        ("+2", Decimal("2")),
        (".5", Decimal("0.5")),
        (",5", Decimal("0.5")),
        ("2.", Decimal("2")),
        (" 3,00 ", Decimal("3.00")),
        ("0.1", Decimal("0.1")),  # exact: no binary float on the way
    ],
)
def test_parse_decimal(text, expected):
    parsed = parse_decimal(text)
    assert parsed == expected
    assert isinstance(parsed, Decimal)


def test_parse_decimal_keeps_exact_digits():
    assert parse_decimal("0.1") * 3 == Decimal("0.3")
    assert str(parse_decimal("1,750")) == "1.750"


@pytest.mark.parametrize(
    "text", ["", "abc", "1,234.5", "1.234,5", "1.2.3", "1e3", "NaN", "Infinity", "1 000", "-", "."]
)
def test_parse_decimal_rejects(text):
    with pytest.raises(InvalidValue) as raised:
        parse_decimal(text)
    assert str(raised.value) == f"not a number: {text!r}"


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("25/10/2026", "dmy"),
        ("10/25/2026", "mdy"),
        ("10/11/2026", None),
        ("13/13/2026", None),  # impossible either way: proves nothing, fails later
        ("25.10.2026", "dmy"),
        ("10-25-2026", "mdy"),
        ("26-01-2015", "dmy"),
        ("2026-10-25", None),
        ("", None),
    ],
)
def test_date_order_evidence(text, evidence):
    assert date_order_evidence(text) == evidence


@pytest.mark.parametrize(
    ("texts", "default", "expected"),
    [
        ([], "mdy", "mdy"),
        (["2026-10-01", "2026-10-25"], "mdy", "mdy"),
        (["10/02/2026", "11/03/2026"], "mdy", "mdy"),
        (["10/02/2026", "11/03/2026"], "dmy", "dmy"),
        (["01/02/2026", "25/10/2026", "03/04/2026"], "mdy", "dmy"),
        (["01/02/2026", "10/25/2026"], "dmy", "mdy"),
        (["19/02/2026", "2026-02-20"], "mdy", "dmy"),
        (["01.10.2026", "26.10.2026"], "mdy", "dmy"),
        (["01-10-2026", "10-26-2026"], "dmy", "mdy"),
    ],
)
def test_sniff_date_order(texts, default, expected):
    assert sniff_date_order(texts, default=default) == expected


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], "mdy"),
        (["10/02/2026"], "mdy"),
        (["10-02-2026"], "mdy"),
        # Every locale that writes dots puts the day first: a file that cannot tell is dmy.
        (["01.02.2026", "03.04.2026"], "dmy"),
        (["01.02.2026", "03/04/2026"], "mdy"),
        (["02.10.2026", "10.25.2026"], "mdy"),  # proved month-first, whatever the dots say
    ],
)
def test_sniff_date_order_without_a_default(texts, expected):
    assert sniff_date_order(texts) == expected


def test_duration_errors_say_what_to_do():
    with pytest.raises(InvalidValue) as raised:
        parse_duration_seconds("30")
    assert "split it into entries of at most 24 hours" in raised.value.hint
    with pytest.raises(InvalidValue) as raised:
        parse_duration_seconds("-1")
    assert raised.value.hint == (
        "correct the entry's time in the tracker (a duration is 0 or more) and export again"
    )


def test_sniff_date_order_refuses_both_orders():
    with pytest.raises(ConflictingDateOrder) as raised:
        sniff_date_order(["01/02/2026", "25/10/2026", "26/10/2026", "10/25/2026"])
    assert raised.value.day_first == "25/10/2026"
    assert raised.value.month_first == "10/25/2026"
    assert str(raised.value) == (
        "dates are both day-first ('25/10/2026') and month-first ('10/25/2026')"
    )
