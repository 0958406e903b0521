"""The sync's own errors, and the trackers' errors grouped by what a run does about them."""

from __future__ import annotations

from integrations import clockify, harvest, toggl
from timesheets.errors import TimesheetError

AUTH_ERRORS = (harvest.HarvestAuthError, clockify.ClockifyAuthError, toggl.TogglAuthError)
PERMISSION_ERRORS = (harvest.HarvestPermissionDenied,)
RATE_ERRORS = (
    harvest.HarvestRateLimited,
    clockify.ClockifyRateLimited,
    toggl.TogglRateLimited,
    toggl.TogglQuotaExceeded,
)
TRANSIENT_ERRORS = (
    harvest.HarvestUnavailable,
    clockify.ClockifyUnavailable,
    toggl.TogglUnavailable,
)
RESPONSE_ERRORS = (
    harvest.HarvestResponseError,
    clockify.ClockifyResponseError,
    toggl.TogglResponseError,
)


class SyncError(TimesheetError):
    """Base of the sync's own errors."""


class ConnectionMisconfigured(SyncError):
    """The connection's settings cannot work (unknown option, no token...): it is stopped."""


class ConnectionNotSyncable(SyncError):
    """The connection is disabled or stopped; a person has to act before it syncs again."""
