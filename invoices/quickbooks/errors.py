"""What the QuickBooks services raise for callers (admin views, tasks, the command) to show."""

from invoices.errors import BillingError


class NotConnected(BillingError):
    """QuickBooks has not been connected (or was disconnected)."""


class ConnectRefused(BillingError):
    """The OAuth callback cannot be accepted; the message says why."""


class PushRefused(BillingError):
    """The invoice cannot be sent now; the message says exactly what to do."""


class PushBusy(BillingError):
    """Another push to this QuickBooks company held the lock for too long; the row stays
    queued and the stalled-push sweep sends it."""
