"""One error base for the billing app: every error a service of `invoices` raises on purpose
is a `BillingError` (drafting, approval, review and adjustments refusals, the rules file, the
QuickBooks services, the model tier, and the pure core's pricing and rule-pattern errors).

The class lives in `invoices.core.errors` so the core, which imports nothing outside itself,
can raise it too; this module is the name the rest of the app uses.
"""

from invoices.core.errors import BillingError

__all__ = ["BillingError"]
