"""The base of every error the billing app raises on purpose (`invoices.errors` is where the
rest of the app imports it from).

It is defined here, in the pure core, because the core's own errors (`PricingError`,
`NotesPatternRefused`) are billing errors too and the core imports nothing outside itself.
"""


class BillingError(Exception):
    """A billing action was refused or could not be done, and the message says why in words
    for the person who asked: a reviewer in the admin, ops staff running a command.

    Services raise a subclass of it; it is caught once, at the edge (the admin turns it into a
    message, a command into a `CommandError`, a task into its failure record). Anything else
    that escapes is a bug, not a refusal."""
