"""QuickBooks' error answers read into the named errors: the fault body in any of its shapes,
the HTTP status, Retry-After, and plain words for the codes a push or a mapping meets."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from xml.etree import ElementTree

from integrations.quickbooks.errors import (
    QuickBooksAuthExpired,
    QuickBooksError,
    QuickBooksThrottled,
    QuickBooksTransientError,
    QuickBooksValidationError,
)


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
