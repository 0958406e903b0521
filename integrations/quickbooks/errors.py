"""Every way QuickBooks says no, as one of a few named errors with a plain-language message
(see the package doc for which is which)."""

from __future__ import annotations

from typing import Any

from integrations.errors import IntegrationError


class QuickBooksError(IntegrationError):
    """Base of every QuickBooks failure; `message` is meant for a person (integrations.errors:
    one base per layer, `retryable` set per class below)."""

    retryable = False

    def __init__(self, message: str, *, code: str = "", detail: str = "", status: int = 0):
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail
        self.status = status


class QuickBooksValidationError(QuickBooksError):
    """QuickBooks refused the content (deleted customer, duplicate name, missing field...)."""


class QuickBooksConfigError(QuickBooksError):
    """Our side is misconfigured (no client id, an http URL without the test switch...)."""


class QuickBooksAuthExpired(QuickBooksError):
    """The access token was refused (401): refresh it and try once more."""

    retryable = True


class QuickBooksReconnectRequired(QuickBooksError):
    """The refresh token is no longer valid: a person must connect QuickBooks again."""


class QuickBooksThrottled(QuickBooksError):
    """Too many requests (429 / ThrottleExceeded): wait, then retry."""

    retryable = True

    def __init__(self, message: str, *, retry_after_seconds: int | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after_seconds = retry_after_seconds


class QuickBooksTransientError(QuickBooksError):
    """QuickBooks or the network failed; `ambiguous` means the request may have been applied."""

    retryable = True

    def __init__(self, message: str, *, ambiguous: bool = True, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.ambiguous = ambiguous
