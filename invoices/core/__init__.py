"""The billing contract in pure Python (no Django imports): classification rules, rates,
rounding, lines and totals, exactly as `docs/billing-semantics.md` defines them.

Django code loads rows into the plain data types here, calls these functions, and stores what
they return. Keeping it pure makes every rule testable as a table, without a database.
"""
