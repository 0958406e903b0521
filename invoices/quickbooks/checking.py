"""The QuickBooks connection checked before go-live (`manage.py check_connections`): settings
present, connected, tokens readable and the refresh token not expired; with `live`, one read of
the company (CompanyInfo) with a valid access token (refreshed first when due, and the rotated
refresh token stored, as every QuickBooks call does). The result is kept on the connection for
its admin page."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from integrations import quickbooks as qbo
from integrations.checks import CheckResult
from integrations.encryption import SecretUnreadable, decrypt
from invoices.models import QuickBooksConnection
from invoices.quickbooks.connection import with_api
from invoices.quickbooks.errors import NotConnected

LABEL = "QuickBooks"


def check_quickbooks(*, live: bool) -> list[CheckResult]:
    """One result, or none when QuickBooks is not configured at all (no client id, no row)."""
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    if conn is None and not settings.QBO_CLIENT_ID:
        return []
    ok, detail = _outcome(conn, live=live)
    if conn is not None:
        # Two fields only: a live check may have just stored refreshed tokens on the row.
        QuickBooksConnection.objects.filter(pk=conn.pk).update(
            last_check_result=("ok: " if ok else "failed: ") + detail,
            last_checked_at=timezone.now(),
        )
    return [CheckResult(LABEL, ok, detail)]


def _outcome(conn: QuickBooksConnection | None, *, live: bool) -> tuple[bool, str]:
    if not settings.QBO_CLIENT_ID or not settings.QBO_CLIENT_SECRET:
        return False, "QBO_CLIENT_ID / QBO_CLIENT_SECRET are not set (the app's Keys tab)"
    if conn is None or conn.status == QuickBooksConnection.Status.DISCONNECTED:
        return False, "not connected; connect QuickBooks on its admin page"
    if conn.status == QuickBooksConnection.Status.NEEDS_RECONNECT:
        return False, f"needs reconnecting ({conn.last_error or 'the connection expired'})"
    try:
        decrypt(conn.access_token_encrypted)
        decrypt(conn.refresh_token_encrypted)
    except SecretUnreadable:
        return False, (
            "the saved tokens cannot be decrypted with BILLABLES_ENCRYPTION_KEYS; add the old "
            "key back or connect QuickBooks again"
        )
    now = timezone.now()
    if conn.refresh_token_expires_at and conn.refresh_token_expires_at <= now:
        return False, "the refresh token expired; connect QuickBooks again"
    expiry = (
        f"refresh token valid until {conn.refresh_token_expires_at:%Y-%m-%d}"
        if conn.refresh_token_expires_at
        else "refresh token expiry unknown"
    )
    if not live:
        return True, f"connected to company {conn.realm_id}, tokens readable, {expiry}"
    try:
        name = with_api(lambda api: api.company_name())
    except NotConnected as exc:
        return False, str(exc)
    except qbo.QuickBooksReconnectRequired as exc:
        return False, f"{exc.message}"
    except qbo.QuickBooksConfigError as exc:
        return False, f"configuration: {exc.message}"
    except qbo.QuickBooksError as exc:
        return False, f"{exc.message}" + ("; try again later" if exc.retryable else "")
    return True, f"read company {name!r} ({conn.realm_id}), {expiry}"
