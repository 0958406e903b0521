"""Every rounding of billed hours and money happens here: amounts, rates, line quantities,
rounding increments, the discount, a model's confidence, hours a reviewer types, and the
percentages and hours the app shows (the admin, the unbilled list and realization call these
functions rather than rounding on their own).

Billing semantics: "round" means ROUND_HALF_UP. Python's Decimal defaults to half-even and
PostgreSQL rounds on its own when handed extra digits, so amounts are rounded here, once, before
they are stored; totals are sums of stored amounts.

Durations are exact fractions (integer seconds / 60 or / 3600) until the one place a quantity is
shown, so no intermediate step rounds.

What rounds elsewhere, and why: a tracker's own duration becomes the whole seconds that a time
entry stores where it enters the product, before any billing: the file importer
(`timesheets.importing.values.hours_to_seconds`, decimal hours half up; its XLSX reader for
[h]:mm:ss cells) and the Clockify adapter (`integrations.clockify`, ISO 8601 durations).
`timesheets` and `integrations` never import `invoices`, so they cannot call this module;
from then on a duration is an exact integer and everything billed from it is rounded here.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction

# ISO 4217 minor units for the currencies that do not use two decimals and that firms bill in.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW"})

QUANTITY_PLACES = 4
RATE_PLACES = 2


def currency_places(currency: str) -> int:
    return 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2


def _exponent(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def round_half_up(value: Decimal, places: int) -> Decimal:
    return value.quantize(_exponent(places), rounding=ROUND_HALF_UP)


def round_confidence(value: Decimal) -> Decimal:
    """A model's confidence stored to 3 places, rounded *down*: 0.6995 must stay below a 0.7
    threshold, never be lifted over it by rounding."""
    return value.quantize(_exponent(3), rounding=ROUND_FLOOR)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """An amount in the currency's minor units, half up."""
    return round_half_up(amount, currency_places(currency))


def round_rate(rate: Decimal) -> Decimal:
    """Effective rate = rate x multiplier, rounded to 2 places (section 5)."""
    return round_half_up(rate, RATE_PLACES)


def fraction_to_decimal(value: Fraction, places: int) -> Decimal:
    """An exact fraction rounded half up to `places` decimals, without float or context limits."""
    scale = 10**places
    scaled = value * scale
    floor = math.floor(scaled)
    # Half up (away from zero for the positive quantities we handle): .5 goes up.
    rounded = floor + 1 if scaled - floor >= Fraction(1, 2) else floor
    return Decimal(rounded).scaleb(-places)


def round_quantity(hours: Fraction) -> Decimal:
    """A line's quantity: exact hours rounded to 4 places, once (section 4.4 and 6)."""
    return fraction_to_decimal(hours, QUANTITY_PLACES)


def round_to_increment(minutes: Fraction, increment: int, mode: str) -> Fraction:
    """Minutes rounded to a multiple of `increment` by mode `up`, `nearest` (half up) or `down`."""
    if increment <= 0:
        return minutes
    steps = minutes / increment
    if mode == "up":
        whole = math.ceil(steps)
    elif mode == "down":
        whole = math.floor(steps)
    elif mode == "nearest":
        whole = math.floor(steps + Fraction(1, 2))
    else:
        raise ValueError(f"unknown rounding mode {mode!r}")
    return Fraction(whole * increment)


def percent_of(amount: Decimal, percent: Decimal, currency: str) -> Decimal:
    """round(amount x percent / 100) in the currency's places (the discount of section 7.3)."""
    return round_money(amount * percent / 100, currency)


def money_str(amount: Decimal, currency: str) -> str:
    """An amount as a fixed-point string with the currency's places (for JSON and display)."""
    return str(round_money(amount, currency))


def hours_to_seconds(hours: Decimal) -> int:
    """Hours a reviewer typed (a write-down to 0.3333 h) as whole seconds, half up."""
    return int(round_half_up(hours * 3600, 0))
