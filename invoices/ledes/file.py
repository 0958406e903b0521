"""The LEDES 1998B file of an approved invoice, and the validator every file passes before it
is handed out (docs/ledes.md).

The format (LEDES 1998B field specification, LEDES Oversight Committee; field order and
requirements as reproduced by CaseFox and Mitratech, see docs/ledes.md): plain ASCII, first line
`LEDES1998B[]`, second the 24 field names separated by "|" and ending "[]", then one line per
line item, its 24 values separated by "|" and ending "[]". Dates are YYYYMMDD. For a fee (F) or
expense (E) line, LINE_ITEM_TOTAL = LINE_ITEM_NUMBER_OF_UNITS x LINE_ITEM_UNIT_COST +
LINE_ITEM_ADJUSTMENT_AMOUNT; an invoice-level adjustment (IF on fees, IE on expenses) carries its
amount in LINE_ITEM_ADJUSTMENT_AMOUNT and LINE_ITEM_TOTAL. INVOICE_TOTAL is the sum of the
invoice's LINE_ITEM_TOTALs.

Every amount written is one the invoice stores (Decimal, as drafting rounded it); the only
figure computed here is a line's adjustment (its amount less units x unit cost, exact in
Decimal), so the file's arithmetic holds to the cent and its total is the invoice's.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from invoices.errors import BillingError
from invoices.ledes.checks import line_subject, presend_checks
from invoices.ledes.codes import CodeSet, line_codes
from invoices.models import ClientPolicy, Firm, Invoice, InvoiceLine, InvoiceStatus

FORMAT_LINE = "LEDES1998B[]"
RECORD_END = "[]"

FIELDS = (
    "INVOICE_DATE",
    "INVOICE_NUMBER",
    "CLIENT_ID",
    "LAW_FIRM_MATTER_ID",
    "INVOICE_TOTAL",
    "BILLING_START_DATE",
    "BILLING_END_DATE",
    "INVOICE_DESCRIPTION",
    "LINE_ITEM_NUMBER",
    "EXP/FEE/INV_ADJ_TYPE",
    "LINE_ITEM_NUMBER_OF_UNITS",
    "LINE_ITEM_ADJUSTMENT_AMOUNT",
    "LINE_ITEM_TOTAL",
    "LINE_ITEM_DATE",
    "LINE_ITEM_TASK_CODE",
    "LINE_ITEM_EXPENSE_CODE",
    "LINE_ITEM_ACTIVITY_CODE",
    "TIMEKEEPER_ID",
    "LINE_ITEM_DESCRIPTION",
    "LAW_FIRM_ID",
    "LINE_ITEM_UNIT_COST",
    "TIMEKEEPER_NAME",
    "TIMEKEEPER_CLASSIFICATION",
    "CLIENT_MATTER_ID",
)
HEADER_LINE = "|".join(FIELDS) + RECORD_END

# Required on every line item ("A null value would be an error" in the specification).
REQUIRED = (
    "INVOICE_DATE",
    "INVOICE_NUMBER",
    "CLIENT_ID",
    "LAW_FIRM_MATTER_ID",
    "INVOICE_TOTAL",
    "BILLING_START_DATE",
    "BILLING_END_DATE",
    "LINE_ITEM_NUMBER",
    "EXP/FEE/INV_ADJ_TYPE",
    "LINE_ITEM_NUMBER_OF_UNITS",
    "LINE_ITEM_TOTAL",
    "LINE_ITEM_DATE",
    "LINE_ITEM_DESCRIPTION",
    "LAW_FIRM_ID",
)
# Required by line type: a fee names its timekeeper, a fee or expense its unit cost. (The
# specification's sample leaves both empty on its IF line and the timekeeper on its E lines.)
REQUIRED_BY_TYPE = {
    "F": ("TIMEKEEPER_ID", "LINE_ITEM_UNIT_COST"),
    "E": ("LINE_ITEM_UNIT_COST",),
    "IF": (),
    "IE": (),
}
DATES = ("INVOICE_DATE", "BILLING_START_DATE", "BILLING_END_DATE", "LINE_ITEM_DATE")
AMOUNTS = (
    "INVOICE_TOTAL",
    "LINE_ITEM_NUMBER_OF_UNITS",
    "LINE_ITEM_ADJUSTMENT_AMOUNT",
    "LINE_ITEM_TOTAL",
    "LINE_ITEM_UNIT_COST",
)
# "Character * 20" in the specification.
MAX_LENGTHS = {
    "INVOICE_NUMBER": 20,
    "CLIENT_ID": 20,
    "LAW_FIRM_MATTER_ID": 20,
    "LINE_ITEM_NUMBER": 20,
    "TIMEKEEPER_ID": 20,
    "CLIENT_MATTER_ID": 20,
}
# The specification's timekeeper classifications (revision of 7/2014).
TIMEKEEPER_CLASSES = {"PT", "AS", "OC", "LA", "OT"}

_DATE = re.compile(r"\d{8}")
# The specification's sample writes "1250." and "0.200"; a sign only in front.
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)")


class LedesRefused(BillingError):
    """The invoice cannot be exported as LEDES 1998B; the message says why and what to do."""


# --- Writing --------------------------------------------------------------------------------


def build_ledes(*, invoice: Invoice) -> str:
    """The LEDES 1998B file of an approved invoice, validated; refuses (LedesRefused) a draft
    or void invoice, one the client's UTBMS requirement holds, or any file the validator
    rejects, rather than hand out a file the client's system would reject."""
    _check_exportable(invoice)
    policy = ClientPolicy.objects.filter(client_id=invoice.client_id).first()
    code_set = CodeSet.load()
    blocking = [f for f in presend_checks(invoice=invoice, code_set=code_set) if f.blocks_export]
    if blocking:
        raise LedesRefused(
            f"invoice {invoice.label} is not exported as LEDES: "
            + "; ".join(str(f) for f in blocking)
        )
    header = _InvoiceFields.of(invoice, policy, Firm.load())
    lines = list(
        invoice.lines.exclude(kind=InvoiceLine.Kind.NO_CHARGE)
        .select_related("category", "person", "project")
        .order_by("position")
    )
    rows = [header.row(number, line, code_set) for number, line in enumerate(lines, start=1)]
    text = "\n".join([FORMAT_LINE, HEADER_LINE, *(_record(row) for row in rows)]) + "\n"
    problems = validate_ledes(text)
    if problems:
        raise LedesRefused(
            f"the LEDES file of invoice {invoice.label} would be invalid, so it is not "
            "written: " + "; ".join(problems)
        )
    return text


def _check_exportable(invoice: Invoice) -> None:
    if invoice.status != InvoiceStatus.APPROVED:
        raise LedesRefused(
            f"invoice {invoice.label} is {invoice.get_status_display().lower()}: only an "
            "approved invoice (numbered, its figures fixed) is exported as LEDES"
        )


@dataclass(frozen=True)
class _InvoiceFields:
    """What every line item of the invoice repeats, and how a line becomes a line item."""

    invoice: Invoice
    client_id: str
    default_matter: str
    law_firm_id: str
    description: str

    @classmethod
    def of(cls, invoice: Invoice, policy: ClientPolicy | None, firm: Firm) -> _InvoiceFields:
        if not firm.tax_id:
            raise LedesRefused(
                "the firm has no tax ID: LEDES 1998B names the sending firm by its taxpayer ID "
                "(LAW_FIRM_ID); set it on the firm's settings"
            )
        client_id = (policy.ledes_client_id if policy else "") or str(invoice.client_id)
        first_project = invoice.project or next(
            (ln.project for ln in invoice.lines.select_related("project") if ln.project),
            None,
        )
        scope = f" ({invoice.project.name})" if invoice.project else ""
        return cls(
            invoice=invoice,
            client_id=client_id,
            default_matter=_matter_id(first_project) if first_project else client_id,
            law_firm_id=firm.tax_id,
            description=clean_text(
                f"Services {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}{scope}"
            ),
        )

    def row(self, number: int, line: InvoiceLine, code_set: CodeSet) -> dict[str, str]:
        invoice = self.invoice
        row = dict.fromkeys(FIELDS, "")
        row.update(
            {
                "INVOICE_DATE": _date(invoice.issue_date),
                "INVOICE_NUMBER": invoice.number or "",
                "CLIENT_ID": self.client_id,
                "LAW_FIRM_MATTER_ID": _matter_id(line.project)
                if line.project
                else self.default_matter,
                "INVOICE_TOTAL": str(invoice.total),
                "BILLING_START_DATE": _date(invoice.period_start),
                "BILLING_END_DATE": _date(invoice.period_end),
                "INVOICE_DESCRIPTION": self.description,
                "LINE_ITEM_NUMBER": str(number),
                "LINE_ITEM_TOTAL": str(line.amount),
                "LINE_ITEM_DATE": _date(line.first_date or invoice.period_end),
                "LINE_ITEM_DESCRIPTION": clean_text(line.description),
                "LAW_FIRM_ID": self.law_firm_id,
            }
        )
        if line.kind == InvoiceLine.Kind.TIME:
            row.update(_fee_fields(line, code_set))
        elif line.kind == InvoiceLine.Kind.EXPENSE:
            row.update(_expense_fields(line, code_set))
        else:
            # Caps, the discount, fixed fees and credits: invoice-level adjustments on fees, as
            # the specification's own sample bills a monthly retainer.
            row.update(
                {
                    "EXP/FEE/INV_ADJ_TYPE": "IF",
                    "LINE_ITEM_NUMBER_OF_UNITS": "1",
                    "LINE_ITEM_ADJUSTMENT_AMOUNT": str(line.amount),
                }
            )
        return row


def _fee_fields(line: InvoiceLine, code_set: CodeSet) -> dict[str, str]:
    if line.person is None:
        raise LedesRefused(
            f"{line_subject(line)} bills several people's time in one line, and a LEDES fee "
            "line names one timekeeper; group this client's lines by entry or by person"
        )
    codes = line_codes(line, code_set)
    return {
        "EXP/FEE/INV_ADJ_TYPE": "F",
        "LINE_ITEM_NUMBER_OF_UNITS": str(line.quantity),
        "LINE_ITEM_ADJUSTMENT_AMOUNT": _adjustment(line),
        "LINE_ITEM_TASK_CODE": codes.task,
        "LINE_ITEM_ACTIVITY_CODE": codes.activity,
        "TIMEKEEPER_ID": str(line.person.pk),
        "LINE_ITEM_UNIT_COST": str(line.unit_price),
        "TIMEKEEPER_NAME": timekeeper_name(line.person.name),
        "TIMEKEEPER_CLASSIFICATION": timekeeper_class(line.person.role),
    }


def _expense_fields(line: InvoiceLine, code_set: CodeSet) -> dict[str, str]:
    return {
        "EXP/FEE/INV_ADJ_TYPE": "E",
        "LINE_ITEM_NUMBER_OF_UNITS": str(line.quantity),
        "LINE_ITEM_ADJUSTMENT_AMOUNT": _adjustment(line),
        "LINE_ITEM_EXPENSE_CODE": line_codes(line, code_set).expense,
        "LINE_ITEM_UNIT_COST": str(line.unit_price),
    }


def _adjustment(line: InvoiceLine) -> str:
    """What makes units x unit cost the line's stored amount: the rounding of the amount to
    the cent, or a line's write-down (exact: Decimal products are not rounded)."""
    return _plain(line.amount - line.quantity * line.unit_price)


def _plain(value: Decimal) -> str:
    return "0" if value == 0 else format(value.normalize(), "f")


def _date(value: dt.date) -> str:
    return f"{value:%Y%m%d}"


def _matter_id(project) -> str:
    return clean_text(project.code) if project.code else str(project.pk)


def timekeeper_name(name: str) -> str:
    """ "Last, First", as e-billing systems expect it: "Ana Pereira" -> "Pereira, Ana"."""
    parts = clean_text(name).rsplit(" ", 1)
    return f"{parts[1]}, {parts[0]}" if len(parts) == 2 else parts[0]


def timekeeper_class(role: str) -> str:
    """The specification's classification for a person's role; "OT" (other timekeeper) for
    roles that are none of partner, associate, of counsel, legal assistant or paralegal."""
    role = role.casefold()
    for words, code in (
        (("of counsel",), "OC"),
        (("partner",), "PT"),
        (("associate",), "AS"),
        (("paralegal", "legal assistant"), "LA"),
    ):
        if any(word in role for word in words):
            return code
    return "OT"


def clean_text(text: str) -> str:
    """A value the format can carry: ASCII only (accents dropped), on one line, with no "|"
    (the field separator, written as "/") and no "[" or "]" (the record end is "[]"; written
    as "(" and ")")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    ascii_text = ascii_text.replace("|", "/").replace("[", "(").replace("]", ")")
    return " ".join(ascii_text.split())


def _record(row: dict[str, str]) -> str:
    return "|".join(row[field] for field in FIELDS) + RECORD_END


# --- Validating -----------------------------------------------------------------------------


def validate_ledes(text: str) -> list[str]:
    """Every problem of a LEDES 1998B file, each naming its line (1-based, as an editor counts)
    and field; an empty list means valid. Checks the format line, the header, each record's
    end and field count, required fields, dates, numbers, lengths, the line types, each
    line's arithmetic, unique line numbers and each invoice's total."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines (the specification's sample ends with one)
    if not lines or lines[0].strip() != FORMAT_LINE:
        return [f"line 1: must be {FORMAT_LINE!r}"]
    if len(lines) < 2 or lines[1].strip() != HEADER_LINE:
        return ["line 2: must be the 24 LEDES 1998B field names, separated by '|', ending '[]'"]
    problems: list[str] = []
    invoices: dict[str, _InvoiceTally] = defaultdict(_InvoiceTally)
    for index, raw in enumerate(lines[2:], start=3):
        row = _parse_record(raw, index, problems)
        if row is not None:
            problems.extend(_row_problems(row, index))
            invoices[row["INVOICE_NUMBER"]].add(row, index, problems)
    if not invoices and not problems:
        problems.append("the file has no line items")
    for number, tally in invoices.items():
        problems.extend(tally.problems(number))
    return problems


def _parse_record(raw: str, index: int, problems: list[str]) -> dict[str, str] | None:
    record = raw.rstrip()
    if not record.isascii():
        problems.append(f"line {index}: has characters that are not ASCII")
    if not record.endswith(RECORD_END):
        problems.append(f"line {index}: does not end with '[]'")
        return None
    values = record[: -len(RECORD_END)].split("|")
    if len(values) != len(FIELDS):
        problems.append(f"line {index}: has {len(values)} fields, LEDES 1998B has {len(FIELDS)}")
        return None
    return dict(zip(FIELDS, values, strict=True))


def _row_problems(row: dict[str, str], index: int) -> list[str]:
    problems = []
    kind = row["EXP/FEE/INV_ADJ_TYPE"]
    if kind and kind not in REQUIRED_BY_TYPE:
        problems.append(f"line {index}: EXP/FEE/INV_ADJ_TYPE {kind!r} is none of F, E, IF, IE")
    for field in (*REQUIRED, *REQUIRED_BY_TYPE.get(kind, ())):
        if not row[field]:
            problems.append(f"line {index}: {field} is required")
    for field in DATES:
        if row[field] and not _is_date(row[field]):
            problems.append(f"line {index}: {field} {row[field]!r} is not a YYYYMMDD date")
    for field in AMOUNTS:
        if row[field] and not _NUMBER.fullmatch(row[field]):
            problems.append(f"line {index}: {field} {row[field]!r} is not a number")
    for field, limit in MAX_LENGTHS.items():
        if len(row[field]) > limit:
            problems.append(
                f"line {index}: {field} {row[field]!r} is longer than {limit} characters"
            )
    klass = row["TIMEKEEPER_CLASSIFICATION"]
    if klass and klass not in TIMEKEEPER_CLASSES:
        problems.append(
            f"line {index}: TIMEKEEPER_CLASSIFICATION {klass!r} is none of "
            f"{', '.join(sorted(TIMEKEEPER_CLASSES))}"
        )
    problems.extend(_arithmetic_problems(row, index, kind))
    return problems


def _arithmetic_problems(row: dict[str, str], index: int, kind: str) -> list[str]:
    total = _number(row["LINE_ITEM_TOTAL"])
    adjustment = _number(row["LINE_ITEM_ADJUSTMENT_AMOUNT"] or "0")
    if total is None or adjustment is None:
        return []
    if kind in ("F", "E"):
        units = _number(row["LINE_ITEM_NUMBER_OF_UNITS"])
        cost = _number(row["LINE_ITEM_UNIT_COST"])
        if units is None or cost is None:
            return []
        if units * cost + adjustment != total:
            return [
                f"line {index}: LINE_ITEM_TOTAL {row['LINE_ITEM_TOTAL']} is not units x unit "
                f"cost + adjustment ({units} x {cost} + {adjustment})"
            ]
    elif kind in ("IF", "IE") and adjustment != total:
        return [
            f"line {index}: an invoice-level adjustment's LINE_ITEM_TOTAL "
            f"{row['LINE_ITEM_TOTAL']} differs from its LINE_ITEM_ADJUSTMENT_AMOUNT "
            f"{row['LINE_ITEM_ADJUSTMENT_AMOUNT']}"
        ]
    return []


class _InvoiceTally:
    """One invoice's line items across the file: their total and their numbers.

    The specification takes an invoice-level value (INVOICE_DATE, INVOICE_TOTAL, ...) from the
    invoice's first line and disregards the others: its own sample repeats its total on every
    line but the last, which is of another matter. So the first line's total is the one
    checked against the sum. Our writer repeats the same values on every line."""

    def __init__(self) -> None:
        self.sum = Decimal(0)
        self.total: str | None = None
        self.numbers: set[str] = set()

    def add(self, row: dict[str, str], index: int, problems: list[str]) -> None:
        number = row["LINE_ITEM_NUMBER"]
        if number in self.numbers:
            problems.append(f"line {index}: LINE_ITEM_NUMBER {number} is used twice")
        self.numbers.add(number)
        if self.total is None:
            self.total = row["INVOICE_TOTAL"]
        self.sum += _number(row["LINE_ITEM_TOTAL"]) or 0

    def problems(self, number: str) -> list[str]:
        total = _number(self.total or "")
        if total is not None and total != self.sum:
            return [
                f"invoice {number}: INVOICE_TOTAL {total} is not the sum of its "
                f"LINE_ITEM_TOTALs ({self.sum})"
            ]
        return []


def _number(text: str) -> Decimal | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _is_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True
