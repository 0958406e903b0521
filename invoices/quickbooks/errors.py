"""What the QuickBooks services raise for callers (admin views, tasks, the command) to show."""


class NotConnected(Exception):
    """QuickBooks has not been connected (or was disconnected)."""


class ConnectRefused(Exception):
    """The OAuth callback cannot be accepted; the message says why."""


class PushRefused(Exception):
    """The invoice cannot be sent now; the message says exactly what to do."""


class PushBusy(Exception):
    """Another push to this QuickBooks company held the lock for too long; the row stays
    queued and the stalled-push sweep sends it."""
