"""Field sizes for money and rates.

Amounts are DecimalFields with a fixed scale and are always computed (and rounded) in Python by
`invoices.core.rounding` before they are stored; the database never rounds money.
"""

MONEY = {"max_digits": 14, "decimal_places": 2}
RATE = {"max_digits": 12, "decimal_places": 2}
