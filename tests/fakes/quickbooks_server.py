"""A local fake of QuickBooks Online (Accounting API v3) and Intuit OAuth2, over real HTTP.

It keeps state (customers, items, income accounts, invoices), and behaves as api-notes section 4
describes: the discovery document and token endpoint (code exchange, refresh with rotation,
`invalid_grant`), the query endpoint (POST text or GET ?query=), create with `requestid` replay
(the same response for the same requestid; faults are not remembered [G]), void
(`POST /invoice?operation=void` with Id and SyncToken: a stale SyncToken is fault 5010, a
voided invoice keeps its number with every amount zeroed and "Voided" before its private note),
Fault bodies in JSON and XML, the lowercase 401 body for an expired token, throttling (429 at
500 requests per window per realm and above 10 concurrent requests), and fault switches:
throttle / fail the next requests, commit an invoice (or a void) but drop the response (the
connection is closed without an answer), and forget request ids (all of them, or those of
dropped answers).

In tests: the `quickbooks_fake` fixture. By hand:

    python -m tests.fakes.quickbooks_server --port 8766

then run the site with the settings QBO_ENVIRONMENT =
"http://127.0.0.1:8766/.well-known/openid_configuration", QBO_API_BASE_URL =
"http://127.0.0.1:8766/v3", QBO_CLIENT_ID = "fake-client", QBO_CLIENT_SECRET = "fake-secret",
and OAUTHLIB_INSECURE_TRANSPORT=1 in the environment.
The authorize page consents at once and redirects back with a code. Control endpoints for a
demo: POST /_fake/invoices/<id>/void | send | pay, GET /_fake/state.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes import published, serving

REALM_ID = "9130354"
CLIENT_ID = "fake-client"
CLIENT_SECRET = "fake-secret"
CENT = Decimal("0.01")


class Fault(Exception):
    """An error answer: HTTP status plus a QuickBooks Fault body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: str = "",
        fault_type: str = "ValidationFault",
        element: str = "",
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.detail, self.fault_type, self.element = detail, fault_type, element


@dataclass
class Switches:
    """Fault injection. Counters count down once per affected request."""

    drop_invoice_responses: int = 0  # commit the next N invoice creates, then hang up
    forget_dropped_request_ids: bool = False  # and do not remember their requestid either
    drop_void_responses: int = 0  # apply the next N voids, then hang up
    throttle_next: int = 0  # answer the next N API requests with 429
    throttle_format: str = "xml"  # "xml" (as QuickBooks often does) or "json"
    retry_after: str | None = None  # Retry-After header on throttling answers
    fail_next: int = 0  # answer the next N API requests with 503
    per_window: int = 500  # requests per realm per window, then 429
    window_seconds: float = 60.0
    max_concurrent: int = 10  # per realm, then 429
    latency_seconds: float = 0.0  # every API request takes this long
    tax_percent: Decimal = Decimal(0)  # automated sales tax added to TotalAmt
    # Non-US mode (VAT/GST; Intuit, "Manage sales tax for non-US locales"): every line must
    # carry a TaxCodeRef naming one of these TaxCode Ids (-> percent), and TxnTaxDetail is
    # computed from them, per code on the code's summed line amounts, half up to the cent. The
    # fault for a missing or unknown code and the per-code rounding are guesses [G].
    non_us_tax_rates: dict[str, Decimal] | None = None
    rotate_refresh_tokens: bool = True
    unique_doc_numbers: bool = False  # the company preference "warn on duplicate numbers"


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int = 0
    body: str = ""


@dataclass
class FakeQuickBooks:
    realm_id: str = REALM_ID
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    access_token_lifetime: int = 3600
    base_url: str = ""
    switches: Switches = field(default_factory=Switches)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.replies: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.auth_codes: dict[str, str] = {}
        self.access_tokens: dict[str, float] = {}
        self.refresh_token: str | None = None
        self.refresh_count = 0
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.throttled = 0
        self._recent: deque[float] = deque()
        self._ids = itertools.count(1)
        self.add_account("Services", account_type="Income")
        self.add_item("Services")

    # --- seeding and inspection ---------------------------------------------------------

    def _next_id(self) -> str:
        return str(next(self._ids))

    def add_customer(self, display_name: str, *, active: bool = True) -> str:
        with self.lock:
            cid = self._next_id()
            self.customers[cid] = {
                "Id": cid,
                "DisplayName": display_name,
                "Active": active,
                "SyncToken": "0",
            }
            return cid

    def add_item(self, name: str, *, item_type: str = "Service", active: bool = True) -> str:
        with self.lock:
            iid = self._next_id()
            self.items[iid] = {
                "Id": iid,
                "Name": name,
                "Type": item_type,
                "Active": active,
                "SyncToken": "0",
                "IncomeAccountRef": {"value": "1"},
            }
            return iid

    def add_account(self, name: str, *, account_type: str = "Income") -> str:
        with self.lock:
            aid = self._next_id()
            self.accounts[aid] = {
                "Id": aid,
                "Name": name,
                "AccountType": account_type,
                "Active": True,
            }
            return aid

    def issue_code(self) -> str:
        code = "code-" + secrets.token_hex(8)
        with self.lock:
            self.auth_codes[code] = self.realm_id
        return code

    def issue_tokens(self) -> tuple[str, str]:
        """A valid access token and the one valid refresh token (as after a connect)."""
        with self.lock:
            access = "at-" + secrets.token_hex(12)
            self.access_tokens[access] = time.time() + self.access_token_lifetime
            self.refresh_token = "rt-" + secrets.token_hex(12)
            return access, self.refresh_token

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self.access_tokens:
                self.access_tokens[token] = 0.0

    def revoke_refresh_token(self) -> None:
        with self.lock:
            self.refresh_token = None

    def forget_request_ids(self) -> None:
        """As if QuickBooks' (undocumented) requestid memory had expired."""
        with self.lock:
            self.replies.clear()

    def void_invoice(self, invoice_id: str) -> None:
        """Void as someone in QuickBooks would (no SyncToken check): the API's void is `void`."""
        with self.lock:
            self._apply_void(self.invoices[invoice_id])

    def _apply_void(self, inv: dict[str, Any]) -> None:
        # [D] QuickBooks keeps a voided invoice and its number, sets every amount and quantity
        # to zero and injects "Voided" before the private note. [G] The exact separator after
        # "Voided" is not documented; readers only rely on the prefix.
        for line in inv.get("Line", []):
            line["Amount"] = Decimal("0.00")
            detail = line.get("SalesItemLineDetail")
            if detail is not None:
                detail["Qty"] = Decimal(0)
        inv.update(
            TotalAmt=Decimal("0.00"),
            Balance=Decimal("0.00"),
            TxnTaxDetail={"TotalTax": Decimal("0.00")},
            PrivateNote="Voided - " + inv.get("PrivateNote", ""),
            SyncToken=str(int(inv["SyncToken"]) + 1),
        )
        inv.setdefault("MetaData", {})["LastUpdatedTime"] = dt.datetime.now(dt.UTC).isoformat()

    def void(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /invoice?operation=void` with `{"Id", "SyncToken"}`, as python-quickbooks'
        `VoidMixin` sends it; the answer is the voided invoice, as a create's is."""
        if entity != "invoice":
            raise Fault(400, "4001", "Unsupported Operation", f"cannot void {entity} here")
        invoice_id = str(body.get("Id") or "")
        if not invoice_id or "SyncToken" not in body:
            raise Fault(
                400,
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter Id and SyncToken are missing in the request",
            )
        with self.lock:
            inv = self.invoices.get(invoice_id)
            if inv is None:
                raise Fault(
                    400,
                    "610",
                    "Object Not Found",
                    "Object Not Found : Another user has deleted this transaction.",
                )
            if str(body["SyncToken"]) != inv["SyncToken"]:
                # [T] The real fault for a SyncToken that is not the current one.
                raise Fault(
                    400,
                    "5010",
                    "Stale Object Error",
                    "Stale Object Error : You and API API were working on this at the same "
                    "time. API API finished before you did, so your work was not saved.",
                )
            if inv["PrivateNote"].startswith("Voided"):
                # [G] What QuickBooks answers to voiding a voided invoice is not documented;
                # the fake answers with the invoice unchanged.
                return {"Invoice": inv}
            if inv["Balance"] < inv["TotalAmt"]:
                # [T] QuickBooks will not void an invoice with a payment applied; [G] the code
                # and wording of its refusal.
                raise Fault(
                    400,
                    "6000",
                    "A business validation error has occurred while processing your request",
                    "Business Validation Error: This invoice has payments applied to it; "
                    "remove them before voiding it.",
                )
            self._apply_void(inv)
            return {"Invoice": inv}

    def mark_sent(self, invoice_id: str) -> None:
        with self.lock:
            inv = self.invoices[invoice_id]
            inv.update(EmailStatus="EmailSent", SyncToken=str(int(inv["SyncToken"]) + 1))

    def pay(self, invoice_id: str, amount: Decimal | None = None) -> None:
        with self.lock:
            inv = self.invoices[invoice_id]
            paid = inv["Balance"] if amount is None else amount
            inv.update(Balance=inv["Balance"] - paid, SyncToken=str(int(inv["SyncToken"]) + 1))

    def delete_customer(self, customer_id: str) -> None:
        """QuickBooks "deletes" a customer by making it inactive."""
        with self.lock:
            self.customers[customer_id]["Active"] = False

    def api_requests(self, method: str | None = None, path_suffix: str = "") -> list[RequestRecord]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path.startswith("/v3/")
                and (method is None or r.method == method)
                and r.path.endswith(path_suffix)
            ]

    def invoice_creates(self) -> list[RequestRecord]:
        return [r for r in self.api_requests("POST", "/invoice") if "operation" not in r.query]

    def invoice_voids(self) -> list[RequestRecord]:
        return [
            r for r in self.api_requests("POST", "/invoice") if r.query.get("operation") == ["void"]
        ]

    def open_invoices(self) -> dict[str, dict[str, Any]]:
        """Invoices not voided (what a client could still be asked to pay)."""
        with self.lock:
            return {
                iid: inv
                for iid, inv in self.invoices.items()
                if not inv["PrivateNote"].startswith("Voided")
            }

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "customers": list(self.customers.values()),
                "items": list(self.items.values()),
                "invoices": list(self.invoices.values()),
            }

    # --- OAuth ----------------------------------------------------------------------------

    def discovery(self) -> dict[str, str]:
        base = self.base_url
        return {
            "issuer": f"{base}/oauth2",
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
            "userinfo_endpoint": f"{base}/oauth2/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/oauth2/v1/tokens/revoke",
            "jwks_uri": f"{base}/oauth2/v1/openid_connect/keys",
        }

    def token(self, authorization: str, form: dict[str, list[str]]) -> tuple[int, dict]:
        expected = (
            "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        )
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type", [""])[0]
        with self.lock:
            if grant == "authorization_code":
                code = form.get("code", [""])[0]
                if self.auth_codes.pop(code, None) is None:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Invalid authorization code",
                    }
                access, refresh = self.issue_tokens()
            elif grant == "refresh_token":
                given = form.get("refresh_token", [""])[0]
                if self.refresh_token is None or given != self.refresh_token:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Incorrect or invalid refresh token",
                    }
                self.refresh_count += 1
                keep = self.refresh_token
                access, refresh = self.issue_tokens()
                if not self.switches.rotate_refresh_tokens:
                    self.refresh_token = refresh = keep
            else:
                return 400, {"error": "unsupported_grant_type"}
        return 200, {
            "token_type": "bearer",
            "access_token": access,
            "expires_in": self.access_token_lifetime,
            "refresh_token": refresh,
            "x_refresh_token_expires_in": 8726400,
        }

    def check_token(self, authorization: str) -> bool:
        token = authorization.removeprefix("Bearer ").strip()
        with self.lock:
            return self.access_tokens.get(token, 0.0) > time.time()

    # --- throttling -----------------------------------------------------------------------

    def admit(self) -> str | None:
        """Count a request in; a reason to throttle it, or None."""
        now = time.monotonic()
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            while self._recent and self._recent[0] < now - self.switches.window_seconds:
                self._recent.popleft()
            self._recent.append(now)
            if self.in_flight > self.switches.max_concurrent:
                return "concurrent"
            if len(self._recent) > self.switches.per_window:
                return "rate"
            if self.switches.throttle_next > 0:
                self.switches.throttle_next -= 1
                return "switch"
        return None

    def release(self) -> None:
        with self.lock:
            self.in_flight -= 1

    # --- entities -------------------------------------------------------------------------

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if entity == "customer":
                return {"Customer": self._create_customer(body)}
            if entity == "item":
                return {"Item": self._create_item(body)}
            if entity == "invoice":
                return {"Invoice": self._create_invoice(body)}
        raise Fault(400, "4001", "Unsupported Operation", f"cannot create {entity} here")

    def _name_taken(self, name: str) -> bool:
        key = name.casefold()
        return any(str(c["DisplayName"]).casefold() == key for c in self.customers.values())

    def _create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("DisplayName") or "").strip()
        if not name:
            raise Fault(
                400,
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter DisplayName is missing",
            )
        if self._name_taken(name):
            raise Fault(
                400,
                "6240",
                "Duplicate Name Exists Error",
                "The name supplied already exists. : Another customer, vendor or "
                "employee is already using this name. Please use a different name.",
            )
        return self.customers[self.add_customer(name)]

    def _create_item(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("Name") or "").strip()
        if not name:
            raise Fault(400, "2020", "Required param missing", "Required parameter Name")
        if any(str(i["Name"]).casefold() == name.casefold() for i in self.items.values()):
            raise Fault(
                400,
                "6240",
                "Duplicate Name Exists Error",
                "The name supplied already exists. : Another product or service is "
                "already using this name. Please use a different name.",
            )
        account = (body.get("IncomeAccountRef") or {}).get("value")
        if body.get("Type", "Service") == "Service" and account not in self.accounts:
            raise Fault(
                400,
                "2020",
                "Required param missing",
                "Required parameter IncomeAccountRef is missing",
                element="Item",
            )
        return self.items[self.add_item(name, item_type=str(body.get("Type", "Service")))]

    def _active(self, table: dict[str, dict[str, Any]], ref: Any, element: str) -> dict:
        key = str((ref or {}).get("value", ""))
        row = table.get(key)
        if row is None or not row.get("Active", True):
            raise Fault(
                400,
                "610",
                "Object Not Found",
                "Something you're trying to use has been made inactive. Check the "
                "fields with accounts, customers, items, vendors or employees.",
                element=element,
            )
        return row

    def _create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        customer = self._active(self.customers, body.get("CustomerRef"), "CustomerRef")
        doc_number = str(body.get("DocNumber") or "")
        if len(doc_number) > 21:
            raise Fault(
                400,
                "6000",
                "A business validation error has occurred",
                "DocNumber is longer than 21 characters",
                element="DocNumber",
            )
        if (
            self.switches.unique_doc_numbers
            and doc_number
            and any(inv["DocNumber"] == doc_number for inv in self.invoices.values())
        ):
            raise Fault(
                400,
                "6140",
                "Duplicate Document Number Error",
                f"Duplicate Document Number Error : You must specify a different "
                f"number. This number has already been used. DocNumber={doc_number}",
            )
        lines_in = body.get("Line") or []
        if not lines_in:
            raise Fault(400, "2020", "Required param missing", "Required parameter Line")
        lines, subtotal = [], Decimal(0)
        by_code: dict[str, Decimal] = {}
        for number, line in enumerate(lines_in, start=1):
            amount = _amount(line.get("Amount"), "Amount")
            detail = line.get("SalesItemLineDetail") or {}
            item = self._active(self.items, detail.get("ItemRef"), "ItemRef")
            if "Qty" in detail and "UnitPrice" in detail:
                computed = (
                    _amount(detail["Qty"], "Qty") * _amount(detail["UnitPrice"], "UnitPrice")
                ).quantize(CENT, rounding=ROUND_HALF_UP)
                if computed != amount:
                    raise Fault(
                        400,
                        "6070",
                        "Amount is not equal to UnitPrice * Qty",
                        f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                        element="Line",
                    )
            subtotal += amount
            tax_code = self._line_tax_code(detail, number)
            by_code[tax_code] = by_code.get(tax_code, Decimal(0)) + amount
            lines.append(
                {
                    **line,
                    "Id": str(number),
                    "LineNum": number,
                    "SalesItemLineDetail": {
                        **detail,
                        "ItemRef": {"value": item["Id"], "name": item["Name"]},
                        "TaxCodeRef": {"value": tax_code},
                    },
                }
            )
        lines.append(
            {"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
        )
        tax = self._total_tax(
            subtotal,
            by_code,
            sent_codes=any(
                "TaxCodeRef" in (ln.get("SalesItemLineDetail") or {}) for ln in lines_in
            ),
        )
        total = subtotal + tax
        iid = self._next_id()
        stamp = dt.datetime.now(dt.UTC).isoformat()
        invoice = {
            "Id": iid,
            "SyncToken": "0",
            "DocNumber": doc_number,
            "TxnDate": body.get("TxnDate") or dt.date.today().isoformat(),
            "DueDate": body.get("DueDate") or "",
            "CurrencyRef": body.get("CurrencyRef") or {"value": "USD"},
            "CustomerRef": {"value": customer["Id"], "name": customer["DisplayName"]},
            "PrivateNote": str(body.get("PrivateNote") or ""),
            "EmailStatus": body.get("EmailStatus") or "NotSet",
            "PrintStatus": body.get("PrintStatus") or "NeedToPrint",
            "Line": lines,
            "TxnTaxDetail": {"TotalTax": tax},
            "TotalAmt": total,
            "Balance": total,
            "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
            "domain": "QBO",
            "sparse": False,
        }
        self.invoices[iid] = invoice
        return invoice

    def _line_tax_code(self, detail: dict[str, Any], number: int) -> str:
        """The line's TaxCodeRef: required in non-US mode and one of its codes; in US mode
        TAX or NON, NON when absent."""
        value = str((detail.get("TaxCodeRef") or {}).get("value") or "")
        rates = self.switches.non_us_tax_rates
        if rates is None:
            return value if value in ("TAX", "NON") else "NON"
        if not value:
            raise Fault(
                400,
                "6000",
                "A business validation error has occurred while processing your request",
                f"Make sure all your transactions have a tax code. Line {number} has none.",
                element="TaxCodeRef",
            )
        if value not in rates:
            raise Fault(
                400,
                "2500",
                "Invalid Reference Id",
                f"Invalid Reference Id : TaxCode {value} does not exist",
                element="TaxCodeRef",
            )
        return value

    def _total_tax(
        self, subtotal: Decimal, by_code: dict[str, Decimal], *, sent_codes: bool
    ) -> Decimal:
        """TxnTaxDetail.TotalTax: non-US, per code from its rate; US automated sales tax at
        `tax_percent` on the TAX lines (on every line when the request sent no TaxCodeRef, as
        this fake did before taxes)."""
        rates = self.switches.non_us_tax_rates
        if rates is not None:
            return sum(
                (
                    (base * rates[code] / 100).quantize(CENT, ROUND_HALF_UP)
                    for code, base in by_code.items()
                ),
                Decimal(0),
            )
        base = by_code.get("TAX", Decimal(0)) if sent_codes else subtotal
        return (base * self.switches.tax_percent / 100).quantize(CENT, ROUND_HALF_UP)

    def read(self, entity: str, entity_id: str) -> dict[str, Any]:
        if entity.lower() == "companyinfo" and entity_id == self.realm_id:
            # Intuit's CompanyInfo read (`GET /companyinfo/{realmId}`), the published example.
            return {
                "CompanyInfo": published.load("quickbooks", "companyinfo_response.json")[
                    "CompanyInfo"
                ]
            }
        table = self._table(entity.capitalize())
        with self.lock:
            if entity_id not in table:
                raise Fault(
                    400,
                    "610",
                    "Object Not Found",
                    f"Object Not Found : Something you're trying to use has been made "
                    f"inactive. {entity} {entity_id}",
                )
            return {entity.capitalize(): table[entity_id]}

    def _table(self, entity: str) -> dict[str, dict[str, Any]]:
        tables = {
            "Customer": self.customers,
            "Item": self.items,
            "Account": self.accounts,
            "Invoice": self.invoices,
        }
        if entity not in tables:
            raise Fault(
                400,
                "4000",
                "Error parsing query",
                f"unknown entity {entity}",
                fault_type="QueryParserError",
            )
        return tables[entity]

    def query(self, text: str) -> dict[str, Any]:
        match = _QUERY.match(text)
        if not match:
            raise Fault(
                400,
                "4000",
                "Error parsing query",
                f"QueryParserError: {text}",
                fault_type="QueryParserError",
            )
        entity = match["entity"]
        conditions = _conditions(match["where"] or "")
        with self.lock:
            rows = list(self._table(entity).values())
        if entity in ("Customer", "Item", "Account") and not any(
            name == "Active" for name, _, _ in conditions
        ):
            rows = [r for r in rows if r.get("Active", True)]
        for name, op, value in conditions:
            rows = [r for r in rows if _holds(r.get(name), op, value)]
        if match["count"]:
            return {"QueryResponse": {"totalCount": len(rows)}}
        rows.sort(key=lambda r: int(r["Id"]))
        start = int(match["start"] or 1)
        size = min(int(match["max"] or 100), 1000)
        page = rows[start - 1 : start - 1 + size]
        if not page:
            return {"QueryResponse": {}}
        return {"QueryResponse": {entity: page, "startPosition": start, "maxResults": len(page)}}


_QUERY = re.compile(
    r"^\s*SELECT\s+(?:(?P<count>COUNT\(\*\))|[\w*,\s]+?)\s+FROM\s+(?P<entity>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s*BY\s+[\w\s,]+?)?"
    r"(?:\s+STARTPOSITION\s+(?P<start>\d+))?(?:\s+MAXRESULTS\s+(?P<max>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_TOKEN = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|(<=|>=|!=|=|<|>|\(|\)|,)|([\w.]+))")


def _conditions(where: str) -> list[tuple[str, str, Any]]:
    tokens, pos = [], 0
    while pos < len(where.rstrip()):
        m = _TOKEN.match(where, pos)
        if not m:
            raise Fault(
                400,
                "4000",
                "Error parsing query",
                f"near {where[pos:]!r}",
                fault_type="QueryParserError",
            )
        string, symbol, word = m.groups()
        if string is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", string[1:-1])))
        elif symbol is not None:
            tokens.append(("sym", symbol))
        else:
            tokens.append(("word", word))
        pos = m.end()
    out, i = [], 0
    while i < len(tokens):
        name = tokens[i][1]
        op = tokens[i + 1][1].upper()
        if op == "IN":
            values, i = [], i + 3
            while tokens[i] != ("sym", ")"):
                if tokens[i][0] != "sym":
                    values.append(_literal(tokens[i]))
                i += 1
            out.append((name, "IN", values))
            i += 1
        else:
            out.append((name, op, _literal(tokens[i + 2])))
            i += 3
        if i < len(tokens) and tokens[i][1].upper() == "AND":
            i += 1
    return out


def _literal(token: tuple[str, str]) -> Any:
    kind, text = token
    if kind == "str":
        return text
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _holds(actual: Any, op: str, value: Any) -> bool:
    def same(a: Any, b: Any) -> bool:
        if isinstance(b, bool):
            return a is b
        return str(a).casefold() == str(b).casefold()

    if op == "=":
        return same(actual, value)
    if op == "!=":
        return not same(actual, value)
    if op == "IN":
        return any(same(actual, v) for v in value)
    raise Fault(400, "4000", "Error parsing query", f"operator {op} is not faked")


def _amount(value: Any, name: str) -> Decimal:
    try:
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise Fault(
            400,
            "2010",
            "Request has invalid or unsupported property",
            f"{name} is not a number: {value!r}",
        ) from exc


def dumps(value: Any) -> str:
    """JSON with Decimal written as an exact number."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def _time() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def fault_json(fault: Fault) -> bytes:
    return dumps(
        {
            "Fault": {
                "Error": [
                    {
                        "Message": fault.message,
                        "Detail": fault.detail,
                        "code": fault.code,
                        "element": fault.element,
                    }
                ],
                "type": fault.fault_type,
            },
            "time": _time(),
        }
    ).encode()


THROTTLE_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<IntuitResponse time="{time}" xmlns="http://schema.intuit.com/finance/v3">'
    '<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; '
    "errorCode=003001; statusCode=429</Message><Detail>The request limit was reached.  Try "
    "again later</Detail></Error></Fault></IntuitResponse>"
)
EXPIRED_401 = (
    '{{"warnings":null,"intuitObject":null,"fault":{{"error":[{{"message":"message='
    'AuthenticationFailed; errorCode=003200; statusCode=401","detail":"Token expired: {token}",'
    '"code":"3200","element":null}}],"type":"AUTHENTICATION"}},"report":null,'
    '"queryResponse":null,"batchItemResponse":[],"attachableResponse":[],'
    '"syncErrorResponse":null,"requestId":null,"time":{millis},"status":null,"cdcresponse":[]}}'
)
_API_PATH = re.compile(r"^/v3/company/(?P<realm>[^/]+)/(?P<rest>.+)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        record = RequestRecord(method, url.path, query, body=body)
        with fake.lock:
            fake.requests.append(record)
        if url.path == "/.well-known/openid_configuration":
            return self._send(record, 200, dumps(fake.discovery()).encode())
        if url.path == "/oauth2/authorize":
            return self._authorize(record, query)
        if url.path == "/oauth2/v1/tokens/bearer":
            status, payload = fake.token(self.headers.get("Authorization", ""), parse_qs(body))
            return self._send(record, status, dumps(payload).encode())
        if url.path == "/oauth2/v1/tokens/revoke":
            return self._send(record, 200, b"")
        if url.path.startswith("/_fake/"):
            return self._control(record, url.path)
        api = _API_PATH.match(url.path)
        if api is None:
            return self._send(record, 404, b'{"error": "not found"}')
        reason = fake.admit()
        try:
            if reason is not None:
                return self._throttle(record, reason)
            self._api(record, method, api["realm"], api["rest"], query, body)
        finally:
            fake.release()

    def _authorize(self, record: RequestRecord, query: dict[str, list[str]]) -> None:
        fake = self.server.fake
        target = query.get("redirect_uri", [""])[0]
        params = {
            "code": fake.issue_code(),
            "state": query.get("state", [""])[0],
            "realmId": fake.realm_id,
        }
        self._send(record, 302, b"", {"Location": f"{target}?{urlencode(params)}"})

    def _control(self, record: RequestRecord, path: str) -> None:
        fake = self.server.fake
        if path == "/_fake/state":
            return self._send(record, 200, dumps(fake.state()).encode())
        m = re.match(r"^/_fake/invoices/(\w+)/(void|send|pay)$", path)
        if not m or m[1] not in fake.invoices:
            return self._send(record, 404, b'{"error": "no such invoice"}')
        {"void": fake.void_invoice, "send": fake.mark_sent, "pay": fake.pay}[m[2]](m[1])
        self._send(record, 200, dumps(fake.invoices[m[1]]).encode())

    def _throttle(self, record: RequestRecord, reason: str) -> None:
        fake = self.server.fake
        with fake.lock:
            fake.throttled += 1
        headers = {"Retry-After": fake.switches.retry_after} if fake.switches.retry_after else {}
        if fake.switches.throttle_format == "xml":
            body = THROTTLE_XML.format(time=_time()).encode()
            return self._send(record, 429, body, headers, content_type="application/xml")
        fault = Fault(
            429,
            "3001",
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "The request limit was reached. Try again later",
            fault_type="SERVICE",
        )
        self._send(record, 429, fault_json(fault), headers)

    def _api(
        self,
        record: RequestRecord,
        method: str,
        realm: str,
        rest: str,
        query: dict[str, list[str]],
        body: str,
    ) -> None:
        fake = self.server.fake
        if fake.switches.latency_seconds:
            time.sleep(fake.switches.latency_seconds)
        authorization = self.headers.get("Authorization", "")
        if not fake.check_token(authorization):
            token = authorization.removeprefix("Bearer ")[:8]
            text = EXPIRED_401.format(token=token, millis=int(time.time() * 1000))
            return self._send(record, 401, text.encode())
        if realm != fake.realm_id:
            fault = Fault(
                403,
                "003100",
                "message=ApplicationAuthorizationFailed",
                "realm not authorized",
                fault_type="AuthorizationFault",
            )
            return self._send(record, 403, fault_json(fault))
        with fake.lock:
            fail = fake.switches.fail_next > 0
            if fail:
                fake.switches.fail_next -= 1
        if fail:
            fault = Fault(
                503,
                "10000",
                "Service Unavailable",
                "Please try again later",
                fault_type="SystemFault",
            )
            return self._send(record, 503, fault_json(fault))
        if int(query.get("minorversion", ["0"])[0] or 0) < 75:
            fault = Fault(
                400,
                "2010",
                "Unsupported minor version",
                "Minor versions below 75 are no longer supported",
            )
            return self._send(record, 400, fault_json(fault))
        try:
            if rest == "query":
                text = body if method == "POST" else query.get("query", [""])[0]
                return self._send(record, 200, self._ok(fake.query(text)))
            parts = rest.split("/")
            if method == "GET" and len(parts) == 2:
                return self._send(record, 200, self._ok(fake.read(parts[0], parts[1])))
            if method == "POST" and len(parts) == 1 and "operation" in query:
                if query["operation"] != ["void"]:
                    raise Fault(
                        400, "4001", "Unsupported Operation", f"operation {query['operation']}"
                    )
                return self._write(record, parts[0], query, body, void=True)
            if method == "POST" and len(parts) == 1:
                return self._write(record, parts[0], query, body)
            raise Fault(400, "4001", "Unsupported Operation", f"{method} {rest}")
        except Fault as fault:
            self._send(record, fault.status, fault_json(fault))

    def _write(
        self,
        record: RequestRecord,
        entity: str,
        query: dict[str, list[str]],
        body: str,
        *,
        void: bool = False,
    ) -> None:
        """A create, or a void: replayed for a requestid seen before (api-notes 4.3)."""
        fake = self.server.fake
        request_id = query.get("requestid", [""])[0]
        switches = fake.switches
        with fake.lock:
            if request_id and (fake.realm_id, request_id) in fake.replies:
                status, data = fake.replies[(fake.realm_id, request_id)]
                replay = True
            else:
                replay = False
                try:
                    parsed = json.loads(body, parse_float=Decimal)
                except ValueError as exc:
                    raise Fault(
                        400,
                        "2010",
                        "Request has invalid or unsupported property",
                        "the body is not JSON",
                    ) from exc
                result = fake.void(entity, parsed) if void else fake.create(entity, parsed)
                status, data = 200, self._ok(result)
                if request_id:
                    fake.replies[(fake.realm_id, request_id)] = (status, data)
            drop = False
            if entity == "invoice" and not replay:
                if void and switches.drop_void_responses > 0:
                    switches.drop_void_responses -= 1
                    drop = True
                elif not void and switches.drop_invoice_responses > 0:
                    switches.drop_invoice_responses -= 1
                    drop = True
                    if switches.forget_dropped_request_ids and request_id:
                        del fake.replies[(fake.realm_id, request_id)]
        if drop:
            return self._hang_up(record)
        self._send(record, status, data)

    def _hang_up(self, record: RequestRecord) -> None:
        """The invoice is committed; the client never hears about it."""
        record.status = -1
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _ok(payload: dict[str, Any]) -> bytes:
        return dumps({**payload, "time": _time()}).encode()

    def _send(
        self,
        record: RequestRecord,
        status: int,
        data: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        record.status = status
        tid = {"intuit_tid": secrets.token_hex(8)}
        serving.send_json(self, status, data, {**tid, **(headers or {})}, content_type)


class FakeServer(serving.FakeServer):
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 would itself serialise concurrent clients
    url_attribute = "base_url"
    thread_name = "fake-quickbooks"
    poll_interval = 0.05


def start(fake: FakeQuickBooks | None = None, port: int = 0) -> tuple[FakeQuickBooks, FakeServer]:
    """Start a fake in a background thread; `server.shutdown()` stops it."""
    return serving.start(fake or FakeQuickBooks(), Handler, port, server_class=FakeServer)


@pytest.fixture
def quickbooks_fake() -> Iterator[FakeQuickBooks]:
    """A fake QuickBooks Online on a free local port; `fake.base_url` is its address."""
    with serving.serving(FakeQuickBooks(), Handler, server_class=FakeServer) as fake:
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake of QuickBooks Online.")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--realm", default=REALM_ID)
    parser.add_argument(
        "--customer", action="append", default=[], help="a customer to start with (repeatable)"
    )
    args = parser.parse_args()
    fake, server = start(FakeQuickBooks(realm_id=args.realm), args.port)
    for name in args.customer:
        fake.add_customer(name)
    base = fake.base_url
    print(
        f"fake QuickBooks Online on {base} (Ctrl-C stops it). Point billables at it with the "
        "settings\n"
        f"  QBO_ENVIRONMENT = '{base}/.well-known/openid_configuration'\n"
        f"  QBO_API_BASE_URL = '{base}/v3'\n"
        f"  QBO_CLIENT_ID = '{fake.client_id}'; QBO_CLIENT_SECRET = '{fake.client_secret}'\n"
        "and OAUTHLIB_INSECURE_TRANSPORT=1 in the environment (plain http).",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
