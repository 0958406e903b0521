"""Intuit OAuth2 through intuit-oauth's `AuthClient` (the authorization URL, code exchange and
refresh are its job), subclassed only to give every HTTP call a timeout: the library passes
none. `AuthClient(...)` fetches the discovery document in its constructor, so it is built only
for the rare OAuth calls, never for Accounting calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from integrations.quickbooks.config import Timeouts, configured_timeouts
from integrations.quickbooks.errors import (
    QuickBooksConfigError,
    QuickBooksReconnectRequired,
    QuickBooksTransientError,
)


@dataclass(frozen=True)
class OAuthConfig:
    client_id: str
    client_secret: str
    redirect_uri: str
    # "production", "sandbox" or a discovery-document URL (intuit-oauth treats any other
    # value as the URL of the discovery document: that is how tests point it at the fake).
    environment: str
    timeouts: Timeouts = field(default_factory=Timeouts)

    @classmethod
    def from_settings(cls, *, redirect_uri: str) -> OAuthConfig:
        if not settings.QBO_CLIENT_ID or not settings.QBO_CLIENT_SECRET:
            raise QuickBooksConfigError(
                "QBO_CLIENT_ID and QBO_CLIENT_SECRET are not set: copy them from the Keys tab "
                "of the app on developer.intuit.com"
            )
        return cls(
            client_id=settings.QBO_CLIENT_ID,
            client_secret=settings.QBO_CLIENT_SECRET,
            redirect_uri=redirect_uri,
            environment=settings.QBO_ENVIRONMENT,
            timeouts=configured_timeouts(),
        )


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in_seconds: int
    refresh_expires_in_seconds: int | None
    realm_id: str = ""


class _TimedAuthClient(AuthClient):
    """intuit-oauth's client with a timeout on every request (it is a `requests.Session`)."""

    def __init__(self, *, timeouts: Timeouts, **kwargs: Any):
        # Set before AuthClient.__init__, which already fetches the discovery document.
        self.timeouts = timeouts.as_requests()
        super().__init__(**kwargs)

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeouts)
        return super().request(method, url, *args, **kwargs)


def _auth_client(config: OAuthConfig) -> AuthClient:
    try:
        return _TimedAuthClient(
            timeouts=config.timeouts,
            client_id=config.client_id,
            client_secret=config.client_secret,
            redirect_uri=config.redirect_uri,
            environment=config.environment,
        )
    except AuthClientError as exc:
        raise QuickBooksTransientError(
            f"Intuit's sign-in service did not answer properly (HTTP {exc.status_code})",
            ambiguous=False,
            status=exc.status_code,
        ) from exc
    except requests.RequestException as exc:
        raise QuickBooksTransientError(
            f"Intuit's sign-in service could not be reached: {exc.__class__.__name__}",
            ambiguous=False,
        ) from exc


def authorization_url(*, config: OAuthConfig, state: str) -> str:
    """Where to send the browser so a QuickBooks admin grants access to one company."""
    return _auth_client(config).get_authorization_url([Scopes.ACCOUNTING], state_token=state)


def exchange_code(*, config: OAuthConfig, code: str, realm_id: str) -> Tokens:
    """The callback's authorization code -> access and refresh tokens."""
    client = _auth_client(config)
    _token_call(lambda: client.get_bearer_token(code, realm_id=realm_id), what="connecting")
    return _tokens_of(client, realm_id=realm_id)


def refresh_tokens(*, config: OAuthConfig, refresh_token: str) -> Tokens:
    """A new access token; the refresh token may rotate, so store the returned one every time."""
    client = _auth_client(config)
    _token_call(lambda: client.refresh(refresh_token=refresh_token), what="refreshing")
    return _tokens_of(client, realm_id="")


def _tokens_of(client: AuthClient, *, realm_id: str) -> Tokens:
    if not client.access_token or not client.refresh_token:
        raise QuickBooksTransientError("Intuit answered without tokens", ambiguous=False)
    refresh_expires = client.x_refresh_token_expires_in
    return Tokens(
        access_token=client.access_token,
        refresh_token=client.refresh_token,
        expires_in_seconds=int(client.expires_in or 3600),
        refresh_expires_in_seconds=int(refresh_expires) if refresh_expires else None,
        realm_id=realm_id,
    )


def _token_call(call: Callable[[], object], *, what: str) -> None:
    try:
        call()
    except AuthClientError as exc:
        error, description = _oauth_error(exc.content)
        if exc.status_code >= 500:
            raise QuickBooksTransientError(
                f"Intuit's sign-in service failed while {what} (HTTP {exc.status_code})",
                ambiguous=False,
                status=exc.status_code,
            ) from exc
        if error == "invalid_client":
            raise QuickBooksConfigError(
                "Intuit does not accept QBO_CLIENT_ID / QBO_CLIENT_SECRET (invalid_client)",
                code=error,
                status=exc.status_code,
            ) from exc
        if error == "invalid_grant":
            raise QuickBooksReconnectRequired(
                "QuickBooks no longer accepts this connection (invalid_grant: "
                f"{description or 'the refresh token expired or was revoked'}); "
                "connect QuickBooks again",
                code=error,
                detail=description,
                status=exc.status_code,
            ) from exc
        raise QuickBooksReconnectRequired(
            f"Intuit refused the request while {what} ({error or exc.status_code}: "
            f"{description}); connect QuickBooks again",
            code=error,
            detail=description,
            status=exc.status_code,
        ) from exc
    except requests.RequestException as exc:
        raise QuickBooksTransientError(
            f"Intuit's sign-in service could not be reached while {what}: {exc.__class__.__name__}",
            ambiguous=isinstance(exc, requests.ReadTimeout),
        ) from exc


def _oauth_error(content: bytes | str | None) -> tuple[str, str]:
    try:
        body = json.loads(content or b"{}")
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error", "")), str(body.get("error_description", ""))
