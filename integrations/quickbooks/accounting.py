"""The Accounting API calls billables makes, through python-quickbooks 0.9.12's `QuickBooks`
client (URL building, `minorversion`, the `requestid` query parameter:
`create_object(..., request_id=...)` sends it), with what it cannot do done here: timeouts,
pacing and error classification in `process_request`, and no hidden refresh (it is built
without an `auth_client` and handed the access token)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import requests
from oauthlib.oauth2.rfc6749.errors import InsecureTransportError
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException
from quickbooks.objects.invoice import Invoice as LibraryInvoice
from requests_oauthlib import OAuth2Session

from integrations.quickbooks.config import Timeouts
from integrations.quickbooks.errors import QuickBooksConfigError, QuickBooksTransientError
from integrations.quickbooks.faults import error_from_response
from integrations.quickbooks.pacing import Pacer, pacer
from integrations.quickbooks.payloads import (
    InvoiceInput,
    RemoteCustomer,
    RemoteInvoice,
    RemoteItem,
    customer_from_row,
    dumps_exact,
    invoice_body,
    invoice_from_row,
    item_from_row,
)

MINOR_VERSION = 75  # Intuit dropped 1-74 on 1 Aug 2025; python-quickbooks requires >= 75
REQUEST_ID_MAX_LENGTH = 50
QUERY_PAGE_SIZE = 1000  # QuickBooks' MAXRESULTS ceiling


class _QuickBooksClient(QuickBooks):
    """python-quickbooks with timeouts, pacing and our error classification (see
    the package doc)."""

    timeouts: tuple[int, int] = (5, 30)
    request_slot: Callable[[], AbstractContextManager[None]] | None = None

    def process_request(self, request_type, url, headers="", params="", data=""):
        # Paced, and holding one of the realm's concurrency slots for the whole round trip.
        with self.request_slot() if self.request_slot is not None else nullcontext():
            return self._timed_request(request_type, url, headers, params, data)

    def _timed_request(self, request_type, url, headers, params, data):
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

    def __init__(self, config: ApiConfig, *, pacing: Pacer | None = None):
        """`pacing`: the realm's request pacing; by default this process's (one per realm)."""
        self.config = config
        self.requests_made = 0
        self._pacer = pacing or pacer
        client = _QuickBooksClient(
            company_id=config.realm_id, minorversion=config.minor_version, use_decimal=True
        )
        client.api_url_v3 = config.base_url
        client.sandbox = False  # the base URL above already says which environment
        client.timeouts = config.timeouts.as_requests()
        client.request_slot = self._request_slot
        client.session = OAuth2Session(
            config.client_id or None,
            token={"access_token": config.access_token, "token_type": "Bearer"},
        )
        self._client = client

    def _request_slot(self) -> AbstractContextManager[None]:
        self.requests_made += 1
        return self._pacer.request(self.config.realm_id, self.config.request_interval_seconds)

    def _call(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return call()
        except QuickbooksException as exc:
            # Only reached for a 200 whose body is not JSON: our process_request raised for
            # everything else already.
            raise QuickBooksTransientError(
                f"QuickBooks sent an answer we cannot read: {exc.message[:200]}"
            ) from exc

    # Company ----------------------------------------------------------------------------

    def company_name(self) -> str:
        """The connected company's name (`GET /companyinfo/{realmId}`): one cheap read that
        proves the token, the realm and the API URL together (`check_connections --live`)."""
        realm = self.config.realm_id
        url = f"{self._client.api_url}/company/{realm}/companyinfo/{realm}"
        result = self._call(lambda: self._client.get(url))
        info = result.get("CompanyInfo") if isinstance(result, dict) else None
        if not isinstance(info, dict):
            raise QuickBooksTransientError("QuickBooks answered CompanyInfo without a company")
        return str(info.get("CompanyName") or "")

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
        return [customer_from_row(row) for row in self._query("SELECT * FROM Customer")]

    def create_customer(self, display_name: str) -> RemoteCustomer:
        # No requestid: callers look the name up first, and QuickBooks refuses a second
        # customer with the same DisplayName (6240), so a repeated create cannot duplicate.
        result = self._call(
            lambda: self._client.create_object(
                "Customer", dumps_exact({"DisplayName": display_name})
            )
        )
        return customer_from_row(result["Customer"])

    def list_items(self) -> list[RemoteItem]:
        """Items an invoice line can use (services and non-inventory; not categories)."""
        return [
            item_from_row(row)
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
        return item_from_row(result["Item"])

    # Invoices ---------------------------------------------------------------------------

    def create_invoice(self, invoice: InvoiceInput, *, request_id: str) -> RemoteInvoice:
        """Create once: QuickBooks answers a repeated `request_id` with the original invoice."""
        if not request_id or len(request_id) > REQUEST_ID_MAX_LENGTH:
            raise ValueError(f"requestid must be 1-{REQUEST_ID_MAX_LENGTH} characters")
        body = dumps_exact(invoice_body(invoice))
        result = self._call(
            lambda: self._client.create_object("Invoice", body, request_id=request_id)
        )
        return invoice_from_row(result["Invoice"])

    def void_invoice(self, invoice_id: str, *, sync_token: str) -> RemoteInvoice:
        """Void an invoice: `POST /invoice?operation=void` with its Id and current SyncToken
        (python-quickbooks' `VoidMixin.void` builds exactly this request; it is called here
        through our client so timeouts, pacing and error classification apply). QuickBooks
        keeps the invoice and its number, zeroes its amounts and puts "Voided" before its
        private note. A stale SyncToken is refused with fault 5010."""
        if not invoice_id or not sync_token:
            raise ValueError("voiding needs the invoice's Id and its current SyncToken")
        target = LibraryInvoice()
        target.Id, target.SyncToken = invoice_id, sync_token
        result = self._call(lambda: target.void(qb=self._client))
        return invoice_from_row(result["Invoice"])

    def find_invoices_by_number(self, doc_number: str) -> list[RemoteInvoice]:
        return [
            invoice_from_row(row)
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
                invoice_from_row(row)
                for row in self._query(f"SELECT * FROM Invoice WHERE Id IN ({chunk})")
            ]
        return found


def quote_query_value(value: str) -> str:
    """A string literal for QuickBooks' query language (backslash escapes, as Intuit wants)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
