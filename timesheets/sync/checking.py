"""Checks of the tracker connections before go-live (`manage.py check_connections`): the
options are valid and the saved token decrypts; with `live`, one cheap authenticated request
(Harvest `/users/me`, Clockify `/user`, Toggl `/me`) proves token, account and URL together.
Each result is a line a person can act on, and is recorded on the connection for the admin."""

from __future__ import annotations

from django.utils import timezone

from integrations import clockify, harvest, toggl
from integrations.checks import CheckResult
from integrations.encryption import SecretUnreadable, decrypt
from integrations.errors import (
    IntegrationError,
    TrackerAuthError,
    TrackerPermissionDenied,
    TrackerRateLimited,
    TrackerUnavailable,
)
from timesheets.models import TrackerConnection
from timesheets.sync.errors import ConnectionMisconfigured
from timesheets.sync.options import sync_options
from timesheets.sync.readers import make_reader


def label(connection: TrackerConnection) -> str:
    return f"{connection.get_kind_display()} {connection.name!r} (#{connection.pk})"


def check_trackers(*, live: bool) -> list[CheckResult]:
    """Every configured tracker connection, checked and the result recorded on it."""
    return [
        check_tracker(connection=connection, live=live)
        for connection in TrackerConnection.objects.order_by("pk")
    ]


def check_tracker(*, connection: TrackerConnection, live: bool) -> CheckResult:
    result = CheckResult(label(connection), *_outcome(connection, live=live))
    TrackerConnection.objects.filter(pk=connection.pk).update(
        last_check_result=("ok: " if result.ok else "failed: ") + result.detail,
        last_checked_at=timezone.now(),
    )
    return result


def _outcome(connection: TrackerConnection, *, live: bool) -> tuple[bool, str]:
    try:
        options = sync_options(kind=connection.kind, options=connection.options)
    except ConnectionMisconfigured as exc:
        return False, f"{exc}; fix the options on the connection"
    if not connection.token_encrypted:
        return False, "no API token saved; save one on the connection"
    try:
        token = decrypt(connection.token_encrypted)
    except SecretUnreadable:
        return False, (
            "the saved token cannot be decrypted with BILLABLES_ENCRYPTION_KEYS (was the key "
            "rotated?); add the old key back or save the token again"
        )
    disabled = "" if connection.is_enabled else " (the connection is disabled: it is not synced)"
    if not live:
        return True, f"options valid, token saved and readable{disabled}"
    try:
        who = _whoami(make_reader(connection, options, token))
    except TrackerAuthError as exc:
        return False, f"the tracker refused the token or account id ({exc}); save a new token"
    except TrackerPermissionDenied as exc:
        return False, f"the token's user may not read this ({exc}); use an administrator's token"
    except TrackerRateLimited as exc:
        return False, f"rate limited or out of quota ({exc}); try again later"
    except TrackerUnavailable as exc:
        return False, f"could not reach the tracker ({exc}); check the base URL and the network"
    except IntegrationError as exc:
        return False, f"unexpected answer ({exc}); check the base URL"
    return True, f"authenticated as {who}{disabled}"


def _whoami(reader: object) -> str:
    """Who the token belongs to, by the tracker's cheapest authenticated request."""
    client = getattr(reader, "client", None)
    if isinstance(client, harvest.HarvestClient):
        user = client.current_user()
        return f"{user.name} <{user.email}>" if user.email else user.name
    if isinstance(client, clockify.ClockifyClient):
        found = client.current_user()
        return f"{found.name} <{found.email}>" if found.email else found.name
    if isinstance(client, toggl.TogglClient):
        me = client.me()
        return f"{me.name} <{me.email}>" if me.email else me.name
    raise TypeError(f"no live check for {type(client).__name__}")
