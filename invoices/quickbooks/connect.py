"""Connecting QuickBooks (Intuit's OAuth flow: a single-use state, the callback's code
exchanged for tokens) and disconnecting it."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from integrations import quickbooks as qbo
from invoices.models import CustomerMapping, ItemMapping, QuickBooksConnection
from invoices.quickbooks.connection import load_connection, oauth_config, store_tokens
from invoices.quickbooks.errors import ConnectRefused
from invoices.quickbooks.queueing import resume_waiting_pushes

# The package's logger: records are named invoices.quickbooks whichever module logs them.
logger = logging.getLogger(__package__)

OAUTH_STATE_LIFETIME = timedelta(minutes=15)


def start_connect(*, redirect_uri: str) -> str:
    """Begin the OAuth flow: store a fresh single-use state, return Intuit's consent URL."""
    config = oauth_config(redirect_uri)
    # The issue time is part of the state, so an old state is refused without another field.
    state = f"{secrets.token_urlsafe(24)}.{int(timezone.now().timestamp())}"
    url = qbo.authorization_url(config=config, state=state)
    conn = load_connection()
    conn.oauth_state = state
    conn.save(update_fields=["oauth_state", "updated_at"])
    return url


def complete_connect(
    *, state: str, code: str, realm_id: str, redirect_uri: str, user=None, error: str = ""
) -> QuickBooksConnection:
    """The OAuth callback: check the state, exchange the code, store realm and tokens
    encrypted. A different company than before clears the mappings (they name its records)."""
    with transaction.atomic():
        conn = QuickBooksConnection.objects.select_for_update().get_or_create(pk=1)[0]
        expected = conn.oauth_state
        conn.oauth_state = ""  # single use, whatever happens next
        conn.save(update_fields=["oauth_state", "updated_at"])
    if not expected or not state or not secrets.compare_digest(expected, state):
        raise ConnectRefused(
            "QuickBooks' answer does not belong to a connection started here (the state does "
            "not match); start again with the Connect button"
        )
    issued = expected.rsplit(".", 1)[-1]
    if not issued.isdigit() or timezone.now().timestamp() - int(issued) > (
        OAUTH_STATE_LIFETIME.total_seconds()
    ):
        raise ConnectRefused("the connection attempt is too old; start again with Connect")
    if error:
        raise ConnectRefused(f"QuickBooks did not grant access ({error}); nothing changed")
    if not code or not realm_id:
        raise ConnectRefused("QuickBooks' answer has no authorization code or company id")
    tokens = qbo.exchange_code(config=oauth_config(redirect_uri), code=code, realm_id=realm_id)
    now = timezone.now()
    with transaction.atomic():
        conn = QuickBooksConnection.objects.select_for_update().get(pk=1)
        other_company = bool(conn.realm_id) and conn.realm_id != realm_id
        if other_company:
            CustomerMapping.objects.all().delete()
            ItemMapping.objects.all().delete()
            conn.default_item_id = conn.default_item_name = ""
        conn.realm_id = realm_id
        conn.environment = qbo.environment_label()
        conn.status = QuickBooksConnection.Status.CONNECTED
        conn.connected_at = now
        conn.last_error = ""
        store_tokens(conn, tokens, now)
        transaction.on_commit(resume_waiting_pushes)
    logger.info("QuickBooks company %s connected by %s", realm_id, user)
    return conn


def disconnect(*, user=None) -> None:
    """Forget the tokens here (revoking at Intuit is done from QuickBooks' app settings)."""
    logger.info("QuickBooks disconnected by %s", user)
    conn = load_connection()
    conn.status = QuickBooksConnection.Status.DISCONNECTED
    conn.access_token_encrypted = conn.refresh_token_encrypted = ""
    conn.access_token_expires_at = conn.refresh_token_expires_at = None
    conn.save()
