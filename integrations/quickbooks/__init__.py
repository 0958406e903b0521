"""QuickBooks Online: Intuit OAuth2 and the few Accounting API calls billables makes.

Typed inputs and outputs (dataclasses, `Decimal` money), explicit timeouts, and every way
QuickBooks says no turned into one of a few named errors with a plain-language message:

    QuickBooksValidationError     the request is wrong; retrying the same request cannot help
    QuickBooksAuthExpired         401: refresh the access token and try once more
    QuickBooksReconnectRequired   the refresh token is dead (`invalid_grant`): a person reconnects
    QuickBooksThrottled           429 / ThrottleExceeded (JSON or XML): wait `retry_after_seconds`
    QuickBooksTransientError      5xx, timeouts, dropped connections: retry, same `requestid`

This package imports neither `timesheets` nor `invoices`. Library choices, with why:

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

Modules:

    errors.py       the named errors above
    config.py       timeouts, which Accounting API URL, the environment's label
    oauth.py        authorization URL, code exchange and token refresh (intuit-oauth)
    faults.py       QuickBooks' fault bodies (JSON and XML) -> the named errors, in plain words
    payloads.py     exact JSON, and customers, items and invoices as typed values
    pacing.py       requests per realm paced under QuickBooks' limit
    accounting.py   the Accounting API calls (python-quickbooks with timeouts)
"""

from integrations.quickbooks.accounting import (
    MINOR_VERSION,
    QUERY_PAGE_SIZE,
    REQUEST_ID_MAX_LENGTH,
    ApiConfig,
    QuickBooksApi,
    quote_query_value,
)
from integrations.quickbooks.config import (
    PRODUCTION_API_URL,
    SANDBOX_API_URL,
    Timeouts,
    api_base_url,
    configured_timeouts,
    environment_label,
)
from integrations.quickbooks.errors import (
    QuickBooksAuthExpired,
    QuickBooksConfigError,
    QuickBooksError,
    QuickBooksReconnectRequired,
    QuickBooksThrottled,
    QuickBooksTransientError,
    QuickBooksValidationError,
)
from integrations.quickbooks.faults import Fault, FaultError, error_from_response, parse_fault
from integrations.quickbooks.oauth import (
    OAuthConfig,
    Tokens,
    authorization_url,
    exchange_code,
    refresh_tokens,
)
from integrations.quickbooks.pacing import request_interval_seconds, settle_pacing
from integrations.quickbooks.payloads import (
    InvoiceInput,
    InvoiceLineInput,
    RemoteCustomer,
    RemoteInvoice,
    RemoteItem,
    dumps_exact,
    invoice_body,
)

__all__ = [
    "MINOR_VERSION",
    "PRODUCTION_API_URL",
    "QUERY_PAGE_SIZE",
    "REQUEST_ID_MAX_LENGTH",
    "SANDBOX_API_URL",
    "ApiConfig",
    "Fault",
    "FaultError",
    "InvoiceInput",
    "InvoiceLineInput",
    "OAuthConfig",
    "QuickBooksApi",
    "QuickBooksAuthExpired",
    "QuickBooksConfigError",
    "QuickBooksError",
    "QuickBooksReconnectRequired",
    "QuickBooksThrottled",
    "QuickBooksTransientError",
    "QuickBooksValidationError",
    "RemoteCustomer",
    "RemoteInvoice",
    "RemoteItem",
    "Timeouts",
    "Tokens",
    "api_base_url",
    "authorization_url",
    "configured_timeouts",
    "dumps_exact",
    "environment_label",
    "error_from_response",
    "exchange_code",
    "invoice_body",
    "parse_fault",
    "quote_query_value",
    "refresh_tokens",
    "request_interval_seconds",
    "settle_pacing",
]
