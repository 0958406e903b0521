"""QuickBooks Online: Intuit OAuth2 and the few Accounting API calls billables makes.

Typed inputs and outputs (dataclasses, `Decimal` money), explicit timeouts, and every way
QuickBooks says no turned into one of a few named errors with a plain-language message:

    QuickBooksValidationError     the request is wrong; retrying the same request cannot help
    QuickBooksAuthExpired         401: refresh the access token and try once more
    QuickBooksReconnectRequired   the refresh token is dead (`invalid_grant`): a person reconnects
    QuickBooksThrottled           429 / ThrottleExceeded (JSON or XML): wait `retry_after_seconds`
    QuickBooksTransientError      5xx, timeouts, dropped connections: retry, same `requestid`

This module imports neither `timesheets` nor `invoices`. Library choices, with why:

* OAuth2 goes through intuit-oauth's `AuthClient` (the authorization URL, code exchange and
  refresh are its job), subclassed only to give every HTTP call a timeout: the library passes
  none. `AuthClient(...)` fetches the discovery document in its constructor, so it is built
  only for the rare OAuth calls, never for Accounting calls.
* Accounting calls go through python-quickbooks 0.9.12's `QuickBooks` client (URL building,
  `minorversion`, the `requestid` query parameter: `create_object(..., request_id=...)` sends
  it). Three things it cannot do are done here:
  - timeouts and error classification: its `process_request` passes no timeout, and its error
    mapping loses the HTTP status and `Retry-After` and turns an XML 429 into a generic
    "Error reading json response", so `process_request` is overridden to time out and to raise
    our named errors from the raw response;
  - exact amounts: its `DecimalEncoder` writes `Decimal` as a JSON *string* ("150.00");
    request bodies are serialised here with `Decimal` as a JSON *number* with its exact digits;
  - no hidden refresh: given an `auth_client` it may refresh (and rotate the refresh token)
    inside its constructor; we build it without one and hand it the access token, so token
    rotation happens in exactly one place (the caller's locked refresh).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from xml.etree import ElementTree

import requests
from django.conf import settings
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from oauthlib.oauth2.rfc6749.errors import InsecureTransportError
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException
from requests_oauthlib import OAuth2Session

PRODUCTION_API_URL = "https://quickbooks.api.intuit.com/v3"
SANDBOX_API_URL = "https://sandbox-quickbooks.api.intuit.com/v3"
MINOR_VERSION = 75  # Intuit dropped 1-74 on 1 Aug 2025; python-quickbooks requires >= 75
REQUEST_ID_MAX_LENGTH = 50
QUERY_PAGE_SIZE = 1000  # QuickBooks' MAXRESULTS ceiling


# --- Errors -------------------------------------------------------------------------------


class QuickBooksError(Exception):
    """Base of every QuickBooks failure; `message` is meant for a person."""

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


# --- Configuration ------------------------------------------------------------------------


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


# --- OAuth2 -------------------------------------------------------------------------------


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


# --- Fault bodies -------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultError:
    code: str
    message: str
    detail: str
    element: str = ""


@dataclass(frozen=True)
class Fault:
    type: str
    errors: tuple[FaultError, ...]


def parse_fault(text: str) -> Fault | None:
    """A Fault from any of the shapes QuickBooks uses: JSON `Fault`, the lowercase JSON of
    401s (`fault.error[].message`), and XML `<IntuitResponse><Fault>` (throttling often)."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return _parse_xml_fault(stripped)
    try:
        body = json.loads(stripped) if stripped else None
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    raw = body.get("Fault") or body.get("fault")
    if not isinstance(raw, dict):
        return None
    errors = raw.get("Error") or raw.get("error") or []
    return Fault(
        type=str(raw.get("type") or ""),
        errors=tuple(
            FaultError(
                code=str(e.get("code") or ""),
                message=str(e.get("Message") or e.get("message") or ""),
                detail=str(e.get("Detail") or e.get("detail") or ""),
                element=str(e.get("element") or ""),
            )
            for e in errors
            if isinstance(e, dict)
        ),
    )


def _parse_xml_fault(text: str) -> Fault | None:
    # ElementTree never fetches external entities, and expat (2.4.1+) bounds entity expansion:
    # enough for the small error documents QuickBooks sends.
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    for node in root.iter():
        if _local(node.tag) != "Fault":
            continue
        errors = []
        for err in node:
            if _local(err.tag) != "Error":
                continue
            parts = {_local(child.tag): (child.text or "").strip() for child in err}
            errors.append(
                FaultError(
                    code=err.get("code", ""),
                    message=parts.get("Message", ""),
                    detail=parts.get("Detail", ""),
                    element=err.get("element", ""),
                )
            )
        return Fault(type=node.get("type", ""), errors=tuple(errors))
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# Plain words for the codes a push or a mapping meets (Intuit's error-code list).
_PLAIN_CODES = {
    "610": "QuickBooks cannot find something this refers to: it was deleted or made inactive "
    "in QuickBooks (a customer or an item); map it again and retry",
    "2020": "QuickBooks says a required field is missing",
    "2500": "QuickBooks does not know a record this refers to; map it again and retry",
    "5010": "the record changed in QuickBooks since it was read",
    "6000": "QuickBooks refused it under one of its business rules",
    "6070": "QuickBooks says a line amount is not quantity times unit price",
    "6140": "QuickBooks already has a transaction with this number",
    "6240": "that name is already used in QuickBooks by another customer, vendor or employee",
}
_AUTH_CODES = {"100", "3200", "3201", "3202"}
_THROTTLE_CODES = {"3001"}


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((when - dt.datetime.now(dt.UTC)).total_seconds()))


def error_from_response(status: int, headers: Any, text: str) -> QuickBooksError | None:
    """The named error a response stands for, or None for a plain success."""
    fault = parse_fault(text)
    if status == 200 and fault is None:
        return None
    first = fault.errors[0] if fault and fault.errors else FaultError("", "", "")
    codes = {e.code.lstrip("0") for e in fault.errors} if fault else set()
    said = " ".join(f"{e.message} {e.detail}" for e in fault.errors) if fault else text[:300]
    kwargs = {"code": first.code, "detail": first.detail, "status": status}
    if status == 429 or codes & _THROTTLE_CODES or "ThrottleExceeded" in said:
        wait = _retry_after(headers.get("Retry-After") if headers else None)
        return QuickBooksThrottled(
            "QuickBooks asked us to slow down (too many requests for this company)"
            + (f"; it asked to wait {wait} s" if wait is not None else ""),
            retry_after_seconds=wait,
            **kwargs,
        )
    fault_type = (fault.type if fault else "").upper()
    if (
        status == 401
        or codes & _AUTH_CODES
        or fault_type in ("AUTHENTICATION", "AUTHENTICATIONFAULT")
    ):
        return QuickBooksAuthExpired(
            "QuickBooks did not accept the access token (expired or revoked)", **kwargs
        )
    if status == 403 or fault_type in ("AUTHORIZATION", "AUTHORIZATIONFAULT"):
        return QuickBooksValidationError(
            "QuickBooks says the connected user may not do this; reconnect as a QuickBooks "
            f"company admin ({first.message or 'forbidden'})",
            **kwargs,
        )
    if status >= 500 or fault_type in ("SYSTEMFAULT", "SERVICE"):
        return QuickBooksTransientError(
            f"QuickBooks had a problem on its side (HTTP {status}"
            + (f", error {first.code}" if first.code else "")
            + "); it is retried",
            **kwargs,
        )
    if fault is None:
        return QuickBooksValidationError(
            f"QuickBooks answered HTTP {status} without saying why: {text[:200]}", **kwargs
        )
    return QuickBooksValidationError(_plain_validation(fault), **kwargs)


def _plain_validation(fault: Fault) -> str:
    parts = []
    for error in fault.errors:
        plain = _PLAIN_CODES.get(error.code.lstrip("0"), "QuickBooks refused it")
        said = error.detail or error.message
        where = f" (field {error.element})" if error.element else ""
        parts.append(f"{plain}{where}: {said} [QuickBooks error {error.code}]")
    return "; ".join(parts) or "QuickBooks refused it without saying why"


# --- Exact JSON -----------------------------------------------------------------------------


def dumps_exact(value: Any) -> str:
    """JSON with every `Decimal` written as a number with exactly its digits (never via float,
    never as a string)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value}")
        return format(value, "f")
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("amounts must be Decimal, not float")
    return json.dumps(value)


def _decimal(value: Any) -> Decimal:
    """A vendor number as Decimal (responses are parsed with parse_float=Decimal)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        return Decimal(value) if value != "" else Decimal(0)
    raise QuickBooksTransientError(f"QuickBooks sent an amount we cannot read: {value!r}")


# --- Accounting API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteCustomer:
    id: str
    display_name: str
    active: bool = True


@dataclass(frozen=True)
class RemoteItem:
    id: str
    name: str
    type: str
    active: bool = True


@dataclass(frozen=True)
class InvoiceLineInput:
    item_id: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    service_date: dt.date | None = None


@dataclass(frozen=True)
class InvoiceInput:
    customer_id: str
    doc_number: str
    txn_date: dt.date
    due_date: dt.date
    currency: str
    lines: tuple[InvoiceLineInput, ...]
    private_note: str


@dataclass(frozen=True)
class RemoteInvoice:
    id: str
    sync_token: str
    doc_number: str
    total_amount: Decimal
    balance: Decimal
    email_status: str
    private_note: str

    @property
    def status(self) -> str:
        """draft, sent, partial, paid or voided. QuickBooks has no status field: a voided
        invoice keeps its number with amounts zeroed and "Voided" leading its private note."""
        if self.private_note.startswith("Voided"):
            return "voided"
        if self.total_amount > 0 and self.balance == 0:
            return "paid"
        if 0 < self.balance < self.total_amount:
            return "partial"
        if self.email_status == "EmailSent":
            return "sent"
        return "draft"


def invoice_body(invoice: InvoiceInput) -> dict[str, Any]:
    """The create body: a draft for sending (EmailStatus NotSet, no BillEmail: not emailed)."""
    return {
        "CustomerRef": {"value": invoice.customer_id},
        "DocNumber": invoice.doc_number,
        "TxnDate": invoice.txn_date.isoformat(),
        "DueDate": invoice.due_date.isoformat(),
        "CurrencyRef": {"value": invoice.currency},
        "PrivateNote": invoice.private_note,
        "EmailStatus": "NotSet",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": line.amount,
                "Description": line.description,
                "SalesItemLineDetail": {
                    "ItemRef": {"value": line.item_id},
                    "Qty": line.quantity,
                    "UnitPrice": line.unit_price,
                    **({"ServiceDate": line.service_date.isoformat()} if line.service_date else {}),
                },
            }
            for line in invoice.lines
        ],
    }


class _Pacer:
    """At most one request per `interval` per realm from this process (QuickBooks allows 500
    per minute per realm; a push also holds a per-realm lock so processes take turns)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def wait(self, realm_id: str, interval: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(realm_id, now))
            self._next[realm_id] = start + interval
        if start > now:
            time.sleep(start - now)

    def settle(self, realm_id: str) -> None:
        """Sleep until this process may send its next request to the realm (used before
        handing the realm's push lock to another process)."""
        with self._lock:
            wait = self._next.get(realm_id, 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)


_pacer = _Pacer()


def settle_pacing(realm_id: str) -> None:
    _pacer.settle(realm_id)


def request_interval_seconds() -> float:
    """Seconds between two requests to one realm under `QBO_REQUESTS_PER_MINUTE` (default 400,
    leaving room under QuickBooks' 500 for people using QuickBooks at the same time)."""
    return 60 / int(getattr(settings, "QBO_REQUESTS_PER_MINUTE", 400))


class _QuickBooksClient(QuickBooks):
    """python-quickbooks with timeouts, pacing and our error classification (see module doc)."""

    timeouts: tuple[int, int] = (5, 30)
    on_request: Callable[[], None] | None = None

    def process_request(self, request_type, url, headers="", params="", data=""):
        if self.on_request is not None:
            self.on_request()
        headers.update({"Authorization": "Bearer " + self.session.access_token})
        try:
            response = self.session.request(
                request_type,
                url,
                headers=headers,
                params=params,
                data=data,
                timeout=self.timeouts,
            )
        except InsecureTransportError as exc:
            raise QuickBooksConfigError(
                "the QuickBooks API URL is not https (set OAUTHLIB_INSECURE_TRANSPORT=1 only "
                "for a local fake server)"
            ) from exc
        except requests.ConnectTimeout as exc:
            raise QuickBooksTransientError(
                "QuickBooks could not be reached (connection timed out)", ambiguous=False
            ) from exc
        except requests.Timeout as exc:
            raise QuickBooksTransientError(
                "QuickBooks did not answer in time; the request may or may not have been applied"
            ) from exc
        except requests.RequestException as exc:
            raise QuickBooksTransientError(
                "the connection to QuickBooks broke before it answered "
                f"({exc.__class__.__name__}); the request may or may not have been applied"
            ) from exc
        error = error_from_response(response.status_code, response.headers, response.text)
        if error is not None:
            raise error
        return response


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    realm_id: str
    access_token: str
    client_id: str = ""
    timeouts: Timeouts = field(default_factory=Timeouts)
    request_interval_seconds: float = 0.15
    minor_version: int = MINOR_VERSION


class QuickBooksApi:
    """One company's Accounting API with one access token. `requests_made` counts calls."""

    def __init__(self, config: ApiConfig):
        self.config = config
        self.requests_made = 0
        client = _QuickBooksClient(
            company_id=config.realm_id, minorversion=config.minor_version, use_decimal=True
        )
        client.api_url_v3 = config.base_url
        client.sandbox = False  # the base URL above already says which environment
        client.timeouts = config.timeouts.as_requests()
        client.on_request = self._before_request
        client.session = OAuth2Session(
            config.client_id or None,
            token={"access_token": config.access_token, "token_type": "Bearer"},
        )
        self._client = client

    def _before_request(self) -> None:
        _pacer.wait(self.config.realm_id, self.config.request_interval_seconds)
        self.requests_made += 1

    def _call(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return call()
        except QuickbooksException as exc:
            # Only reached for a 200 whose body is not JSON: our process_request raised for
            # everything else already.
            raise QuickBooksTransientError(
                f"QuickBooks sent an answer we cannot read: {exc.message[:200]}"
            ) from exc

    # Queries ----------------------------------------------------------------------------

    def _query(self, select: str) -> Iterator[dict[str, Any]]:
        """Every row of `select` (no MAXRESULTS in it), page by page."""
        entity = select.split(" FROM ", 1)[1].split()[0]
        start = 1
        while True:
            page = f"{select} STARTPOSITION {start} MAXRESULTS {QUERY_PAGE_SIZE}"
            result = self._call(lambda page=page: self._client.query(page))
            rows = result.get("QueryResponse", {}).get(entity, [])
            yield from rows
            if len(rows) < QUERY_PAGE_SIZE:
                return
            start += QUERY_PAGE_SIZE

    def list_customers(self) -> list[RemoteCustomer]:
        return [_customer(row) for row in self._query("SELECT * FROM Customer")]

    def create_customer(self, display_name: str) -> RemoteCustomer:
        # No requestid: callers look the name up first, and QuickBooks refuses a second
        # customer with the same DisplayName (6240), so a repeated create cannot duplicate.
        result = self._call(
            lambda: self._client.create_object(
                "Customer", dumps_exact({"DisplayName": display_name})
            )
        )
        return _customer(result["Customer"])

    def list_items(self) -> list[RemoteItem]:
        """Items an invoice line can use (services and non-inventory; not categories)."""
        return [
            _item(row)
            for row in self._query("SELECT * FROM Item")
            if row.get("Type") in ("Service", "NonInventory")
        ]

    def income_account_id(self) -> str | None:
        """The account new service items post to: one named like Services, else the first."""
        rows = list(self._query("SELECT * FROM Account WHERE AccountType = 'Income'"))
        for row in rows:
            if "service" in str(row.get("Name", "")).lower():
                return str(row["Id"])
        return str(rows[0]["Id"]) if rows else None

    def create_service_item(self, name: str, *, income_account_id: str) -> RemoteItem:
        body = {"Name": name, "Type": "Service", "IncomeAccountRef": {"value": income_account_id}}
        result = self._call(lambda: self._client.create_object("Item", dumps_exact(body)))
        return _item(result["Item"])

    # Invoices ---------------------------------------------------------------------------

    def create_invoice(self, invoice: InvoiceInput, *, request_id: str) -> RemoteInvoice:
        """Create once: QuickBooks answers a repeated `request_id` with the original invoice."""
        if not request_id or len(request_id) > REQUEST_ID_MAX_LENGTH:
            raise ValueError(f"requestid must be 1-{REQUEST_ID_MAX_LENGTH} characters")
        body = dumps_exact(invoice_body(invoice))
        result = self._call(
            lambda: self._client.create_object("Invoice", body, request_id=request_id)
        )
        return _invoice(result["Invoice"])

    def find_invoices_by_number(self, doc_number: str) -> list[RemoteInvoice]:
        return [
            _invoice(row)
            for row in self._query(
                f"SELECT * FROM Invoice WHERE DocNumber = {quote_query_value(doc_number)}"
            )
        ]

    def read_invoices(self, ids: Iterable[str]) -> list[RemoteInvoice]:
        """The current state of these invoices (missing ones were deleted in QuickBooks)."""
        found: list[RemoteInvoice] = []
        ids = list(ids)
        for start in range(0, len(ids), 100):
            chunk = ", ".join(quote_query_value(i) for i in ids[start : start + 100])
            found += [
                _invoice(row) for row in self._query(f"SELECT * FROM Invoice WHERE Id IN ({chunk})")
            ]
        return found


def quote_query_value(value: str) -> str:
    """A string literal for QuickBooks' query language (backslash escapes, as Intuit wants)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _customer(row: dict[str, Any]) -> RemoteCustomer:
    return RemoteCustomer(
        id=str(row["Id"]),
        display_name=str(row.get("DisplayName", "")),
        active=bool(row.get("Active", True)),
    )


def _item(row: dict[str, Any]) -> RemoteItem:
    return RemoteItem(
        id=str(row["Id"]),
        name=str(row.get("Name", "")),
        type=str(row.get("Type", "")),
        active=bool(row.get("Active", True)),
    )


def _invoice(row: dict[str, Any]) -> RemoteInvoice:
    return RemoteInvoice(
        id=str(row["Id"]),
        sync_token=str(row.get("SyncToken", "")),
        doc_number=str(row.get("DocNumber", "")),
        total_amount=_decimal(row.get("TotalAmt", 0)),
        balance=_decimal(row.get("Balance", 0)),
        email_status=str(row.get("EmailStatus", "")),
        private_note=str(row.get("PrivateNote", "")),
    )
