"""What the adapter reads from Django settings: timeouts, where the Accounting API is, and
which environment a connection is in."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from integrations.quickbooks.errors import QuickBooksConfigError

PRODUCTION_API_URL = "https://quickbooks.api.intuit.com/v3"
SANDBOX_API_URL = "https://sandbox-quickbooks.api.intuit.com/v3"


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: int = 5
    read_seconds: int = 30

    def as_requests(self) -> tuple[int, int]:
        return (self.connect_seconds, self.read_seconds)


def configured_timeouts() -> Timeouts:
    connect, read = getattr(settings, "QBO_TIMEOUT_SECONDS", (5, 30))
    return Timeouts(connect_seconds=int(connect), read_seconds=int(read))


def api_base_url() -> str:
    """`QBO_API_BASE_URL` when set (a local fake in tests), else Intuit's URL for the
    environment."""
    explicit = getattr(settings, "QBO_API_BASE_URL", "")
    if explicit:
        return explicit.rstrip("/")
    environment = settings.QBO_ENVIRONMENT.lower()
    if environment in ("production", "prod"):
        return PRODUCTION_API_URL
    if environment in ("sandbox", "sand"):
        return SANDBOX_API_URL
    raise QuickBooksConfigError(
        f"QBO_ENVIRONMENT is {settings.QBO_ENVIRONMENT!r} (a discovery URL), so QBO_API_BASE_URL "
        "must say where the Accounting API is"
    )


def environment_label() -> str:
    """What to store as the connection's environment (the model field holds 20 characters)."""
    environment = settings.QBO_ENVIRONMENT.lower()
    if environment in ("production", "prod"):
        return "production"
    if environment in ("sandbox", "sand"):
        return "sandbox"
    return "custom"
