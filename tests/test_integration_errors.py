"""One error base for the integrations layer: every adapter's errors are `IntegrationError`s
whose `retryable` says whether the same request may succeed later unchanged; the trackers'
errors also share five kinds, so the sync catches one class per kind whichever tracker."""

from __future__ import annotations

import pytest

from integrations import claude, clockify, harvest, toggl
from integrations import quickbooks as qbo
from integrations.errors import (
    IntegrationError,
    TrackerAuthError,
    TrackerPermissionDenied,
    TrackerRateLimited,
    TrackerResponseError,
    TrackerUnavailable,
)


def made(cls: type[Exception]) -> Exception:
    if issubclass(cls, TrackerRateLimited):
        return cls("limited", retry_after=30)
    return cls("why")


@pytest.mark.parametrize(
    ("cls", "kind", "retryable"),
    [
        (harvest.HarvestAuthError, TrackerAuthError, False),
        (harvest.HarvestPermissionDenied, TrackerPermissionDenied, False),
        (harvest.HarvestRateLimited, TrackerRateLimited, True),
        (harvest.HarvestUnavailable, TrackerUnavailable, True),
        (harvest.HarvestResponseError, TrackerResponseError, False),
        (clockify.ClockifyAuthError, TrackerAuthError, False),
        (clockify.ClockifyRateLimited, TrackerRateLimited, True),
        (clockify.ClockifyUnavailable, TrackerUnavailable, True),
        (clockify.ClockifyResponseError, TrackerResponseError, False),
        (toggl.TogglAuthError, TrackerAuthError, False),
        (toggl.TogglQuotaExceeded, TrackerRateLimited, True),
        (toggl.TogglRateLimited, TrackerRateLimited, True),
        (toggl.TogglUnavailable, TrackerUnavailable, True),
        (toggl.TogglResponseError, TrackerResponseError, False),
    ],
)
def test_tracker_errors_share_kinds_and_say_whether_to_retry(cls, kind, retryable):
    error = made(cls)
    assert isinstance(error, kind)
    assert isinstance(error, IntegrationError)
    assert error.retryable is retryable
    if isinstance(error, TrackerRateLimited):
        assert error.retry_after == 30


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (qbo.QuickBooksValidationError("duplicate name"), False),
        (qbo.QuickBooksConfigError("no client id"), False),
        (qbo.QuickBooksReconnectRequired("invalid_grant"), False),
        (qbo.QuickBooksAuthExpired("401"), True),
        (qbo.QuickBooksThrottled("429", retry_after_seconds=5), True),
        (qbo.QuickBooksTransientError("503"), True),
        (claude.ModelUnavailable("overloaded"), True),
        (claude.ModelNotAuthorized("401"), False),
        (claude.ModelRequestRejected("unknown model"), False),
    ],
)
def test_quickbooks_and_claude_errors_have_the_one_base(error, retryable):
    assert isinstance(error, IntegrationError)
    assert error.retryable is retryable


def test_retryable_can_be_said_per_error():
    assert IntegrationError("x").retryable is False
    assert IntegrationError("x", retryable=True).retryable is True
