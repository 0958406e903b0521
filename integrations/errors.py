"""The one error base of the integrations layer, and what a tracker's answer meant whichever
tracker gave it.

Every adapter's errors (harvest, clockify, toggl, quickbooks, claude) derive from
`IntegrationError`, whose `retryable` says whether the same request may succeed later without
anyone changing anything (a rate limit, an outage) or not (a refused token, a request the
vendor calls wrong). The edges catch this one base; the apps keep their own bases above it.

The trackers' errors also derive from one of five kinds below, so the sync and the connection
checks catch `TrackerAuthError` rather than three vendors' classes side by side:

    TrackerAuthError         the token (or account id) was refused: a person saves a new one
    TrackerPermissionDenied  the token's user may not read this: a better-placed token
    TrackerRateLimited       a rate limit or quota: come back after `retry_after` seconds
    TrackerUnavailable       5xx, timeouts, dropped connections after the retries
    TrackerResponseError     an answer the adapter does not understand
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Base of every error an adapter in `integrations` raises."""

    retryable: bool = False

    def __init__(self, *args: object, retryable: bool | None = None) -> None:
        super().__init__(*args)
        if retryable is not None:
            self.retryable = retryable


class TrackerAuthError(IntegrationError):
    """The tracker refused the token or the account id; retrying cannot help."""


class TrackerPermissionDenied(IntegrationError):
    """The token is valid, but its user may not read this."""


class TrackerRateLimited(IntegrationError):
    """A rate limit or a used-up quota; `retry_after`: seconds, when the tracker said."""

    retryable = True

    def __init__(self, message: str, *, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TrackerUnavailable(IntegrationError):
    """The tracker did not answer usefully within the retries."""

    retryable = True


class TrackerResponseError(IntegrationError):
    """An answer the adapter does not understand (an unexpected status or body)."""
