"""The values of time-tracker exports: dates, times, durations, booleans and decimal numbers.

Pure functions without Django. Each raises `InvalidValue`, whose message is written for the
person who exported the file (it ends up in the row error), never a Python repr of internals.
"""

import re
from collections.abc import Iterable
from datetime import date, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

from timesheets.errors import TimesheetError

DateOrder = Literal["dmy", "mdy"]
DATE_ORDERS: tuple[DateOrder, ...] = ("dmy", "mdy")
# Harvest and Clockify default to the US order; a file that cannot tell is read that way.
DEFAULT_DATE_ORDER: DateOrder = "mdy"

MAX_DURATION_SECONDS = 24 * 60 * 60
SECONDS_PER_HOUR = Decimal(3600)

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
# D/M/YYYY or M/D/YYYY with a slash, a dot or a dash, the same one twice ("26.01.2015",
# "26-01-2015", "1/26/2015"); which of the first two is the day is the file's date order.
_SEPARATED_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})")
EXPECTED_DATES = "YYYY-MM-DD, M/D/YYYY, D.M.YYYY or D-M-YYYY"
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([ap])\.?m\.?", re.IGNORECASE)
_TIME_24H = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_CLOCK_DURATION = re.compile(r"(-?)(\d+):(\d{2})(?::(\d{2}))?")
_DECIMAL = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)")

_TRUE = frozenset({"yes", "true", "1"})
_FALSE = frozenset({"no", "false", "0"})
# Yes/No as trackers write them in other languages (German, French, Spanish, Portuguese,
# Dutch). [G] A guess: no localized export has been seen; they go with the localized headers
# of formats.py and cannot be mistaken for anything else.
_TRUE_LOCALIZED = frozenset({"ja", "oui", "sí", "si", "sim"})
_FALSE_LOCALIZED = frozenset({"nein", "non", "não", "nao", "nee"})


class InvalidValue(TimesheetError, ValueError):
    """A cell that does not hold what its column promises. `hint` says what to do about it,
    when the value itself tells (a duration over a day is split in the tracker); otherwise the
    row error takes its column's hint."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ConflictingDateOrder(InvalidValue):
    """One file has dates that can only be day-first and others that can only be month-first."""

    def __init__(self, *, day_first: str, month_first: str) -> None:
        self.day_first = day_first
        self.month_first = month_first
        super().__init__(
            f"dates are both day-first ({day_first!r}) and month-first ({month_first!r})"
        )


def parse_decimal(text: str) -> Decimal:
    """A plain decimal number with a dot or a decimal comma ("1.75", "1,75", "-0.5").

    No thousands separators: "1,234" would be ambiguous between locales, and no value of these
    exports (hours of one entry) ever needs one.
    """
    cleaned = text.strip()
    if not _DECIMAL.fullmatch(cleaned):
        raise InvalidValue(f"not a number: {text!r}")
    try:
        return Decimal(cleaned.replace(",", "."))
    except InvalidOperation as error:  # unreachable after the pattern; kept as a guard
        raise InvalidValue(f"not a number: {text!r}") from error


def parse_bool(text: str) -> bool:
    """Yes/No, true/false or 1/0, in any case (and Ja/Nein, Oui/Non, Sí/No, Sim/Não)."""
    folded = text.strip().casefold()
    if folded in _TRUE or folded in _TRUE_LOCALIZED:
        return True
    if folded in _FALSE or folded in _FALSE_LOCALIZED:
        return False
    raise InvalidValue(f"not a yes/no value: {text!r} (expected Yes or No)")


def date_order_evidence(text: str) -> DateOrder | None:
    """What one slash, dotted or dashed date proves about the file's order: 25/10/2026 (or
    25.10.2026) can only be day-first, 10/25/2026 only month-first; 10/11/2026, ISO dates and
    impossible dates prove nothing."""
    match = _SEPARATED_DATE.fullmatch(text.strip())
    if not match:
        return None
    first, second = int(match.group(1)), int(match.group(3))
    if first > 12 >= second:
        return "dmy"
    if second > 12 >= first:
        return "mdy"
    return None


class DateOrderSniffer:
    """`sniff_date_order` fed one date at a time, so that a file is sniffed while it streams."""

    def __init__(self) -> None:
        self.day_first: str | None = None
        self.month_first: str | None = None
        self.separators: set[str] = set()

    def feed(self, text: str) -> None:
        """Raises ConflictingDateOrder at the first date that contradicts an earlier one."""
        if match := _SEPARATED_DATE.fullmatch(text.strip()):
            self.separators.add(match.group(2))
        else:
            return  # ISO dates and anything else prove nothing
        evidence = date_order_evidence(text)
        if evidence == "dmy" and self.day_first is None:
            self.day_first = text.strip()
        elif evidence == "mdy" and self.month_first is None:
            self.month_first = text.strip()
        if self.day_first is not None and self.month_first is not None:
            raise ConflictingDateOrder(day_first=self.day_first, month_first=self.month_first)

    def order(self, *, default: DateOrder | None = None) -> DateOrder:
        if self.day_first is not None:
            return "dmy"
        if self.month_first is not None:
            return "mdy"
        if default is not None:
            return default
        return "dmy" if self.separators == {"."} else DEFAULT_DATE_ORDER


def sniff_date_order(texts: Iterable[str], *, default: DateOrder | None = None) -> DateOrder:
    """The date order of one file, proved by its own dates, else `default`.

    Without a `default`, a file that cannot tell is read month-first (Harvest's and Clockify's
    US default), except a file whose dates are all dotted (01.10.2026): the locales that write
    dots all put the day first, so month-first would read every such file wrong.
    Raises ConflictingDateOrder when the file proves both orders: such a file mixes locales and
    no reading of it is safe.
    """
    sniffer = DateOrderSniffer()
    for text in texts:
        sniffer.feed(text)
    return sniffer.order(default=default)


def parse_date(text: str, *, order: DateOrder = DEFAULT_DATE_ORDER) -> date:
    """YYYY-MM-DD, or D/M/YYYY and M/D/YYYY (one or two digits; with slashes, dots or dashes)
    read in `order`."""
    cleaned = text.strip()
    if match := _ISO_DATE.fullmatch(cleaned):
        year, month, day = (int(part) for part in match.groups())
        read_as = ""
    elif match := _SEPARATED_DATE.fullmatch(cleaned):
        first, second, year = int(match.group(1)), int(match.group(3)), int(match.group(4))
        day, month = (first, second) if order == "dmy" else (second, first)
        read_as = " read day-first" if order == "dmy" else " read month-first"
    else:
        raise InvalidValue(f"not a date: {text!r} (expected {EXPECTED_DATES})")
    try:
        return date(year, month, day)
    except ValueError as error:
        raise InvalidValue(f"impossible date {text!r}{read_as}: {error}") from error


def parse_time(text: str) -> time:
    """A time of day: 12-hour ("09:15:00 AM", "3:00pm") or 24-hour ("13:55:00", "15:00")."""
    cleaned = text.strip()
    if match := _TIME.fullmatch(cleaned):
        hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
        if not 1 <= hour <= 12:
            raise InvalidValue(f"impossible time {text!r}: a 12-hour clock runs from 1 to 12")
        # 12 AM is midnight and 12 PM is noon.
        hour = hour % 12 + (12 if match.group(4).lower() == "p" else 0)
    elif match := _TIME_24H.fullmatch(cleaned):
        hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    else:
        raise InvalidValue(f"not a time: {text!r} (expected HH:MM, HH:MM:SS or 9:15 AM)")
    try:
        return time(hour, minute, second)
    except ValueError as error:
        raise InvalidValue(f"impossible time {text!r}: {error}") from error


def hours_to_seconds(hours: Decimal) -> int:
    """Decimal hours as whole seconds, exactly when they are whole.

    Rounded half up to the second otherwise: trackers print hours to two or three decimals, so
    0.333 h is 1198.8 s and we store 1199. The loss is below one second per entry and the
    stored value stays an exact integer that every later sum can trust.
    """
    return int((hours * SECONDS_PER_HOUR).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_seconds(seconds: int) -> str:
    """H:MM:SS, the way messages show a duration."""
    hours, rest = divmod(abs(seconds), 3600)
    sign = "-" if seconds < 0 else ""
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def parse_duration_seconds(text: str) -> int:
    """A duration as whole seconds: "H:MM:SS", "H:MM", or decimal hours ("1.75", "1,75").

    Negative durations and durations over 24 hours (one entry cannot be longer than a day,
    and the database refuses it) are errors.
    """
    cleaned = text.strip()
    if match := _CLOCK_DURATION.fullmatch(cleaned):
        negative = match.group(1) == "-"
        hours, minutes, seconds = (int(match.group(n) or 0) for n in (2, 3, 4))
        if minutes > 59 or seconds > 59:
            raise InvalidValue(f"not a duration: {text!r} (minutes and seconds run to 59)")
        total = hours * 3600 + minutes * 60 + seconds
        total = -total if negative else total
    else:
        try:
            hours_value = parse_decimal(cleaned)
        except InvalidValue:
            raise InvalidValue(
                f"not a duration: {text!r} (expected H:MM:SS, H:MM or decimal hours)"
            ) from None
        total = hours_to_seconds(hours_value)
    if total < 0:
        raise InvalidValue(
            f"negative duration {text!r}",
            hint="correct the entry's time in the tracker (a duration is 0 or more) and export "
            "again",
        )
    if total > MAX_DURATION_SECONDS:
        raise InvalidValue(
            f"duration {text!r} is {format_seconds(total)}, over the 24 hours one entry can last",
            hint="correct the entry in the tracker, or split it into entries of at most 24 "
            "hours, and export again",
        )
    return total
