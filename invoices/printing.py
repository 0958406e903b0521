"""The invoice a client receives: one context builder for the printable page and its PDF.

`invoice_document` turns an invoice into plain values for `templates/invoices/invoice_print.html`
(firm and client details, number or DRAFT, dates, payment terms, lines worded for the client);
the admin's printable page renders it as HTML and `invoice_pdf` renders the same template to a
PDF with WeasyPrint, so the two never disagree.

Nothing internal reaches the page: no original notes, classification sources or derivations.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Max, Min
from django.template.loader import render_to_string

from invoices.models import ClientPolicy, Firm, Invoice, InvoiceEntry, InvoiceLine, InvoiceStatus

logger = logging.getLogger(__name__)

# Lines listed above the subtotal: exactly the kinds the subtotal adds up (time and the
# reviewer's manual lines, credits included; `invoices.core.pricing.SUBTOTAL_KINDS`) and the
# zero-amount no-charge lines, so the rows add up to the subtotal printed under them. Caps and
# the discount come under it, as adjustments of it.
_BODY_KINDS = (
    InvoiceLine.Kind.TIME,
    InvoiceLine.Kind.NO_CHARGE,
    InvoiceLine.Kind.FIXED_FEE,
    InvoiceLine.Kind.EXPENSE,
    InvoiceLine.Kind.CREDIT,
)
_NO_CHARGE_SUFFIX = " (No charge)"
# Drafting's name for entries without a category; a client never reads it.
_UNCATEGORIZED = "Uncategorized"
_OTHER_WORK = "Other work"


def hours_shown(quantity: Decimal) -> str:
    """A line's hours as printed: 2 places when the stored quantity has no more, else all 4.

    Billing semantics section 6: the amount is the *shown* quantity times the rate, so anyone
    can multiply it out. Quantities are stored to 4 places; 1.3333 h at 150.00 is 200.00, but
    a display rounded to 1.33 would multiply out to 199.50. So a quantity is never rounded for
    display: 1.5000 prints as 1.50 (exact), 1.3333 as 1.3333.
    """
    if (quantity * 100) % 1 == 0:
        return f"{quantity:.2f}"
    return f"{quantity:.4f}"


def hours_in_words(quantity: Decimal) -> str:
    """Hours inside a sentence ("No charge: 2.0 h ..."): trailing zeros dropped, one kept."""
    text = f"{quantity.normalize():f}"
    return text if "." in text else f"{text}.0"


def money_shown(amount: Decimal) -> str:
    """An amount as stored (already in the currency's places), with thousands separators."""
    return f"{amount:,}"


def _lower_first(text: str) -> str:
    # "Internal meeting" -> "internal meeting", but "GC call" and "API work" keep their case.
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _without_uncategorized(text: str) -> str:
    if text.startswith(_UNCATEGORIZED):
        return _OTHER_WORK + text[len(_UNCATEGORIZED) :]
    return text


def no_charge_wording(description: str, quantity: Decimal) -> str:
    """Drafting's "Internal meeting (No charge)" as a client reads it:
    "No charge: 2.0 h internal meeting"."""
    base = description.removesuffix(_NO_CHARGE_SUFFIX).strip() or _OTHER_WORK
    return f"No charge: {hours_in_words(quantity)} h {_lower_first(_without_uncategorized(base))}"


def _rate_basis(derivation: dict) -> str:
    """Whose rate priced a line, in a client's words: "Partner rate", "Ben Okafor's rate",
    with the rate row's dates when it has any ("Ben Okafor's rate from 15 Oct 2026")."""
    rate = derivation.get("rate") or {}
    words = []
    for part in (rate.get("for") or "").split(" + "):
        kind, _, name = part.partition(" ")
        if kind == "person" and name:
            words.append(f"{name}'s rate")
        elif kind == "role" and name:
            words.append(f"{name} rate")
    basis = ", ".join(words) or "standard rate"
    if rate.get("from"):
        basis += f" from {_day(dt.date.fromisoformat(rate['from']))}"
    if rate.get("to"):
        basis += f" until {_day(dt.date.fromisoformat(rate['to']))}"
    return basis


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def _span(first: dt.date | None, last: dt.date | None) -> str:
    if first is None:
        return ""
    if last is None or last == first:
        return _day(first)
    return f"{_day(first)} - {_day(last)}"


@dataclass
class PrintedLine:
    kind: str
    description: str
    quantity: str  # "" where a line has none to show
    unit: str  # "h" for hours, "" for a count
    unit_price: str
    amount: str
    code: str = ""
    date: str = ""
    timekeeper: str = ""
    # Why two lines of the same wording differ (person, role, rate dates or project).
    qualifier: str = ""


@dataclass
class PrintedTax:
    """One rate of the tax summary (billing semantics 12.5): the base, the rate, the tax."""

    name: str
    rate: str  # "19%", or "per QuickBooks"
    base: str
    tax: str  # "" when QuickBooks computes it


def printed_taxes(summary: list[dict]) -> list[PrintedTax]:
    """The invoice's stored tax summary as the printable invoice shows it."""
    return [
        PrintedTax(
            name=row["name"],
            rate="per QuickBooks"
            if row["rate"] is None
            else f"{Decimal(row['rate']).normalize():f}%",
            base=money_shown(Decimal(row["base"])),
            tax="" if row["tax"] is None else money_shown(Decimal(row["tax"])),
        )
        for row in summary
    ]


@dataclass
class InvoiceDocument:
    invoice: Invoice
    firm: Firm | None
    policy: ClientPolicy | None
    is_draft: bool
    is_void: bool
    number: str  # the invoice number, or "DRAFT"
    payment_terms: str
    lines: list[PrintedLine] = field(default_factory=list)
    adjustments: list[PrintedLine] = field(default_factory=list)
    per_entry: bool = False  # one line per entry: each line shows its date and timekeeper
    show_codes: bool = False
    subtotal: str = ""
    total: str = ""  # the amount due: with tax when the invoice is taxed
    title: str = ""
    # Billing semantics 12.5: the total before tax and the summary per rate (empty: no tax).
    total_before_tax: str = ""
    taxes: list[PrintedTax] = field(default_factory=list)
    tax_per_quickbooks: bool = False

    @property
    def label_columns(self) -> int:
        """The columns left of Amount, which the subtotal and total labels span."""
        return 3 + (2 if self.per_entry else 0) + (1 if self.show_codes else 0)


def payment_terms(days: int) -> str:
    return "Due on receipt" if days == 0 else f"Net {days} days"


def invoice_document(*, invoice: Invoice) -> InvoiceDocument:
    """Everything the client-facing invoice shows, as display-ready values."""
    firm = Firm.objects.filter(pk=1).first()
    policy = ClientPolicy.objects.filter(client_id=invoice.client_id).first()
    snapshot = invoice.policy_snapshot or {}
    # The terms that priced the draft (its due date came from them), not today's policy.
    days = snapshot.get("payment_terms_days", (invoice.due_date - invoice.issue_date).days)
    per_entry = snapshot.get("group_lines_by") == "entry"
    lines = list(invoice.lines.select_related("person", "project").order_by("position"))
    spans = {
        row["line_id"]: (row["first"], row["last"])
        for row in InvoiceEntry.objects.filter(invoice=invoice, line__isnull=False)
        .values("line_id")
        .annotate(first=Min("entry__date"), last=Max("entry__date"))
    }

    is_draft = invoice.status == InvoiceStatus.DRAFT
    document = InvoiceDocument(
        invoice=invoice,
        firm=firm,
        policy=policy,
        is_draft=is_draft,
        is_void=invoice.status == InvoiceStatus.VOID,
        number=invoice.number or "DRAFT",
        payment_terms=payment_terms(days),
        per_entry=per_entry,
        show_codes=any(line.billing_code for line in lines),
        subtotal=money_shown(invoice.subtotal),
        total=money_shown(invoice.total_with_tax),
        title=f"{'DRAFT ' if is_draft else ''}{invoice.label} {invoice.client.name}",
        total_before_tax=money_shown(invoice.total),
        taxes=printed_taxes(invoice.tax_summary or []),
        tax_per_quickbooks=any(row["tax"] is None for row in invoice.tax_summary or []),
    )
    body = [line for line in lines if line.kind in _BODY_KINDS]
    for line in body:
        document.lines.append(_printed(line, per_entry=per_entry, span=spans.get(line.id)))
    _qualify_alike(body, document.lines, spans)
    for line in lines:
        if line.kind not in _BODY_KINDS:
            document.adjustments.append(
                PrintedLine(
                    kind=line.kind,
                    description=line.description,
                    quantity="",
                    unit="",
                    unit_price="",
                    amount=money_shown(line.amount),
                    code=line.billing_code,
                )
            )
    return document


def _printed(line: InvoiceLine, *, per_entry: bool, span) -> PrintedLine:
    hours = line.kind in (InvoiceLine.Kind.TIME, InvoiceLine.Kind.NO_CHARGE)
    description = _without_uncategorized(line.description)
    if line.kind == InvoiceLine.Kind.NO_CHARGE:
        description = no_charge_wording(line.description, line.quantity)
    first = span[0] if span else line.first_date
    return PrintedLine(
        kind=line.kind,
        description=description,
        quantity=hours_shown(line.quantity) if hours else f"{line.quantity.normalize():f}",
        unit="h" if hours else "",
        unit_price="" if line.kind == InvoiceLine.Kind.NO_CHARGE else money_shown(line.unit_price),
        amount=money_shown(line.amount),
        code=line.billing_code,
        date=_day(first) if per_entry and first else "",
        timekeeper=line.person.name if per_entry and line.person else "",
    )


def _qualify_alike(
    lines: list[InvoiceLine], printed: list[PrintedLine], spans: dict[int, tuple]
) -> None:
    """Two lines that read the same ("Development" twice, at 325.00 and 165.00) say why they
    differ: their project, whom or what the rate is for, and, if that is not enough, their
    dates. Per-entry lines need none of it: each shows its own date and timekeeper."""
    alike: dict[tuple[str, str], list[int]] = {}
    for index, item in enumerate(printed):
        if not item.date:
            alike.setdefault((item.kind, item.description.casefold()), []).append(index)
    for indexes in alike.values():
        if len(indexes) < 2:
            continue
        projects = {lines[i].project_id for i in indexes}
        for i in indexes:
            words = []
            if len(projects) > 1 and lines[i].project is not None:
                words.append(lines[i].project.name)
            if lines[i].kind == InvoiceLine.Kind.TIME:
                words.append(_rate_basis(lines[i].derivation))
            printed[i].qualifier = ", ".join(words)
        seen: dict[str, int] = {}
        for i in indexes:
            seen[printed[i].qualifier] = seen.get(printed[i].qualifier, 0) + 1
        for i in indexes:
            if seen[printed[i].qualifier] > 1:
                span = _span(*spans.get(lines[i].id, (lines[i].first_date, None)))
                printed[i].qualifier = ", ".join(w for w in (printed[i].qualifier, span) if w)


def pdf_filename(invoice: Invoice) -> str:
    if invoice.number:
        return f"{invoice.number}.pdf"
    return f"DRAFT-{invoice.pk}.pdf"


def invoice_pdf(*, invoice: Invoice) -> bytes:
    """The printable invoice as a PDF file (A4, the page's own print styles)."""
    # Imported here: WeasyPrint loads Pango when imported, and only this path needs it.
    import weasyprint

    document = invoice_document(invoice=invoice)
    html = render_to_string("invoices/invoice_print.html", {"doc": document, "for_pdf": True})
    logo = document.firm.logo_url if document.firm else ""
    try:
        return weasyprint.HTML(string=html, url_fetcher=_logo_fetcher(logo)).write_pdf()
    except OSError as error:
        # A logo that downloads but does not decode (a truncated or mislabelled image) fails
        # only when the PDF is written; the invoice is still wanted, so it goes out without.
        logger.warning("invoice PDF of %s without the logo %s: %s", invoice.label, logo, error)
        return weasyprint.HTML(string=html, url_fetcher=_logo_fetcher("")).write_pdf()


def _logo_fetcher(logo_url: str):
    """WeasyPrint would fetch any URL the page names; the PDF needs exactly one, the firm's
    logo. Anything else is refused (WeasyPrint then leaves it out with a warning), and a logo
    that cannot be fetched in a few seconds is left out rather than stalling the download."""
    from weasyprint.urls import URLFetcher

    class LogoOnly(URLFetcher):
        def fetch(self, url, headers=None):
            if not logo_url or url != logo_url:
                raise ValueError(f"not fetched for an invoice PDF: {url}")
            return super().fetch(url, headers)

    return LogoOnly(timeout=5, allowed_protocols=("http", "https"), allow_redirects=False)
