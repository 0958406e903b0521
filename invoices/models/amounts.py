"""Field sizes for money and rates.

Amounts are DecimalFields with a fixed scale and are always computed (and rounded) in Python by
`invoices.core.rounding` before they are stored; the database never rounds money.
"""

from typing import TypedDict


class DecimalSize(TypedDict):
    """A DecimalField's size, spread into the field (`models.DecimalField(**MONEY)`)."""

    max_digits: int
    decimal_places: int


MONEY: DecimalSize = {"max_digits": 14, "decimal_places": 2}
RATE: DecimalSize = {"max_digits": 12, "decimal_places": 2}
