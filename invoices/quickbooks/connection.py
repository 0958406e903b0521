"""The QuickBooks connection (one row) and its tokens: a valid access token on demand, refreshed
under a row lock so the rotating refresh token is spent once and stored every time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations import quickbooks as qbo
from integrations.encryption import decrypt, encrypt
from invoices.models import QuickBooksConnection
from invoices.quickbooks.errors import NotConnected

T = TypeVar("T")

ACCESS_TOKEN_MARGIN = timedelta(minutes=5)


def load_connection() -> QuickBooksConnection:
    conn, _ = QuickBooksConnection.objects.get_or_create(
        pk=1, defaults={"environment": qbo.environment_label()}
    )
    return conn


def oauth_config(redirect_uri: str = "") -> qbo.OAuthConfig:
    return qbo.OAuthConfig.from_settings(
        redirect_uri=redirect_uri or getattr(settings, "QBO_REDIRECT_URI", "")
    )


def store_tokens(conn: QuickBooksConnection, tokens: qbo.Tokens, now) -> None:
    conn.access_token_encrypted = encrypt(tokens.access_token)
    conn.refresh_token_encrypted = encrypt(tokens.refresh_token)
    conn.access_token_expires_at = now + timedelta(seconds=tokens.expires_in_seconds)
    if tokens.refresh_expires_in_seconds:
        conn.refresh_token_expires_at = now + timedelta(seconds=tokens.refresh_expires_in_seconds)
    conn.save()


def require_connected(conn: QuickBooksConnection | None) -> QuickBooksConnection:
    if conn is None or conn.status == QuickBooksConnection.Status.DISCONNECTED:
        raise NotConnected("QuickBooks is not connected: connect it on the QuickBooks page")
    if conn.status == QuickBooksConnection.Status.NEEDS_RECONNECT:
        raise qbo.QuickBooksReconnectRequired(
            "QuickBooks needs reconnecting: " + (conn.last_error or "the connection expired")
        )
    return conn


def access_token(*, rejected: str = "") -> tuple[str, str]:
    """(realm id, a valid access token), refreshing first when it expires within 5 minutes or
    when QuickBooks just rejected `rejected`."""
    conn = require_connected(QuickBooksConnection.objects.filter(pk=1).first())
    expires = conn.access_token_expires_at
    if not rejected and expires and expires > timezone.now() + ACCESS_TOKEN_MARGIN:
        return conn.realm_id, decrypt(conn.access_token_encrypted)
    return _refresh(rejected=rejected)


def _refresh(*, rejected: str) -> tuple[str, str]:
    """Refresh under a row lock so two workers never both spend the refresh token; the rotated
    refresh token is stored in the same transaction, every time."""
    failure: qbo.QuickBooksReconnectRequired | None = None
    with transaction.atomic():
        conn = require_connected(QuickBooksConnection.objects.select_for_update().get(pk=1))
        current = decrypt(conn.access_token_encrypted)
        now = timezone.now()
        expires = conn.access_token_expires_at
        fresh = bool(expires and expires > now + ACCESS_TOKEN_MARGIN)
        if fresh and (not rejected or current != rejected):
            return conn.realm_id, current  # another worker refreshed while we waited
        try:
            tokens = qbo.refresh_tokens(
                config=oauth_config(), refresh_token=decrypt(conn.refresh_token_encrypted)
            )
        except qbo.QuickBooksReconnectRequired as exc:
            # Not retried: a person reconnects. Saved (the transaction commits) before raising.
            conn.status = QuickBooksConnection.Status.NEEDS_RECONNECT
            conn.last_error = exc.message
            conn.save(update_fields=["status", "last_error", "updated_at"])
            failure = exc
        else:
            store_tokens(conn, tokens, now)
            return conn.realm_id, tokens.access_token
    raise failure


def api_for(realm_id: str, token: str) -> qbo.QuickBooksApi:
    return qbo.QuickBooksApi(
        qbo.ApiConfig(
            base_url=qbo.api_base_url(),
            realm_id=realm_id,
            access_token=token,
            client_id=settings.QBO_CLIENT_ID,
            timeouts=qbo.configured_timeouts(),
            request_interval_seconds=qbo.request_interval_seconds(),
        )
    )


def with_api(call: Callable[[qbo.QuickBooksApi], T]) -> T:
    """Run `call` with a valid token; after a 401 refresh once and run it again."""
    realm_id, token = access_token()
    try:
        return call(api_for(realm_id, token))
    except qbo.QuickBooksAuthExpired:
        realm_id, token = access_token(rejected=token)
        return call(api_for(realm_id, token))
