"""The sync's own errors, and the trackers' errors grouped by what a run does about them."""

from __future__ import annotations

from integrations.errors import (
    TrackerAuthError,
    TrackerPermissionDenied,
    TrackerRateLimited,
    TrackerResponseError,
    TrackerUnavailable,
)
from timesheets.errors import TimesheetError

# One kind per class, whichever tracker raised it (integrations.errors).
AUTH_ERRORS = (TrackerAuthError,)
PERMISSION_ERRORS = (TrackerPermissionDenied,)
RATE_ERRORS = (TrackerRateLimited,)
TRANSIENT_ERRORS = (TrackerUnavailable,)
RESPONSE_ERRORS = (TrackerResponseError,)


class SyncError(TimesheetError):
    """Base of the sync's own errors."""


class ConnectionMisconfigured(SyncError):
    """The connection's settings cannot work (unknown option, no token...): it is stopped."""


class ConnectionNotSyncable(SyncError):
    """The connection is disabled or stopped; a person has to act before it syncs again."""
