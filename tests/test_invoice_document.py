"""The invoice a client receives (issue 16): the printable page and its PDF, lines worded for a
client, and the firm's and client's details from the rules file.

Real PostgreSQL; the PDF is rendered by WeasyPrint and read back with pypdf; the logo is served
over real HTTP from a local server.
"""

import datetime as dt
import http.server
import io
import threading
from decimal import Decimal as D

import PIL.Image
import pypdf
import pytest
import yaml
from django.contrib.auth.models import User
from django.urls import reverse

from invoices.adjustments import add_manual_line
from invoices.approval import approve_invoice
from invoices.core.wording import ABBREVIATIONS, client_wording, tidy_note
from invoices.drafting import Period, draft_invoices
from invoices.models import ClientPolicy, Firm, Invoice
from invoices.printing import hours_in_words, hours_shown, invoice_document
from invoices.review import correct_entry
from invoices.rulesfile import export_rules, import_rules
from tests import billing_fixtures as make

OCTOBER = Period(dt.date(2026, 10, 1), dt.date(2026, 10, 31))
FIRM_ADDRESS = "12 Harbour Street\nBoston, MA 02110"
CLIENT_ADDRESS = "Accounts payable\n1 Main Street\nSpringfield"


def html_of(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", "pw-root-1234")


@pytest.fixture
def october(db):
    """Acme by category, 14-day terms, non-billable time shown: Ana (Partner, 300.00) and Cleo
    (Consultant, 165.00) both on "Development", so the two lines differ only by rate."""
    firm = make.firm()
    firm.name = "Northwind Consulting"
    firm.address, firm.tax_id = FIRM_ADDRESS, "US-98-7654321"
    firm.payment_instructions = "Bank transfer to IBAN US00 1234 5678"
    firm.save()
    dev = make.category("development")
    internal = make.category("internal-meeting", billable=False)
    acme = make.client(
        "Acme",
        group_lines_by="category",
        payment_terms_days=14,
        show_non_billable=True,
        billing_address=CLIENT_ADDRESS,
        billing_email="ap@acme.example",
        po_number="PO-4471",
    )
    project = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    cleo = make.person("Cleo Marsh", "Consultant")
    make.rate("300.00", role="Partner")
    make.rate("165.00", role="Consultant")
    make.rule(dev, task="Dev")
    make.rule(internal, task="Internal")
    make.entry(project, ana, minutes=90, notes="Drafted the motion")
    # 80 minutes = 1.3333... h: stored to 4 places, 1.3333 x 165.00 = 219.99.
    make.entry(project, cleo, minutes=60, notes="Research", day=dt.date(2026, 10, 6))
    make.entry(project, cleo, minutes=20, notes="Research", day=dt.date(2026, 10, 7))
    make.entry(project, ana, minutes=120, notes="coordination", task="Internal")
    vague = make.entry(project, cleo, minutes=30, notes="misc", task="Other")
    [invoice] = draft_invoices(period=OCTOBER).invoices
    return {"invoice": invoice, "vague": vague, "client": acme, "project": project, "ana": ana}


def print_url(invoice):
    return reverse("admin:invoices_invoice_print", args=[invoice.pk])


def pdf_url(invoice):
    return reverse("admin:invoices_invoice_pdf", args=[invoice.pk])


def approved(october, root) -> Invoice:
    correct_entry(entry=october["vague"], user=root, billable=False)
    return approve_invoice(invoice=Invoice.objects.get(status="draft"), user=root)


# --- The printable page ---------------------------------------------------------------------


def test_printable_draft_shows_firm_client_terms_and_says_draft(client, root, october):
    client.force_login(root)
    html = html_of(client.get(print_url(october["invoice"])))

    for shown in (
        "Northwind Consulting",
        "12 Harbour Street",
        "Tax ID: US-98-7654321",
        "Accounts payable",
        "ap@acme.example",
        "PO-4471",
        "Net 14 days",
        "14 Nov 2026",  # due: issued 31 Oct + 14 days
        "Bank transfer to IBAN US00 1234 5678",
    ):
        assert shown in html, shown
    # A draft never looks sendable: DRAFT where the number goes, with its label.
    assert '<td id="invoice-number"><strong>DRAFT</strong>' in html
    assert f"draft #{october['invoice'].pk}" in html
    assert "not a request for payment" in html
    assert "INVOICE</h1>" not in html and "Please quote" not in html


def test_hours_to_two_places_where_exact_and_lines_that_read_alike_say_why(client, root, october):
    client.force_login(root)
    html = html_of(client.get(print_url(october["invoice"])))

    # 1.5 h is exact at 2 places; 1.3333 h is not, and 1.33 x 165.00 would not give 219.99.
    assert "1.50 h" in html and "1.5000" not in html
    assert "1.3333 h" in html and "219.99" in html
    # The two "Development" lines (300.00 and 165.00) say whose rate each is.
    assert 'Development <span class="qualifier">(Partner rate)</span>' in html
    assert 'Development <span class="qualifier">(Consultant rate)</span>' in html


def test_no_charge_lines_are_worded_for_the_client(client, root, october):
    correct_entry(entry=october["vague"], user=root, billable=False)  # no category at all
    client.force_login(root)
    html = html_of(client.get(print_url(Invoice.objects.get(status="draft"))))

    assert "No charge: 2.0 h internal meeting" in html
    assert "No charge: 0.5 h other work" in html
    assert "Uncategorized" not in html and "(No charge)" not in html
    assert "misc" not in html and "coordination" not in html  # notes stay internal


def test_approved_invoice_shows_its_number_and_how_to_pay(client, root, october):
    invoice = approved(october, root)
    client.force_login(root)
    html = html_of(client.get(print_url(invoice)))

    assert invoice.number and f"<strong>{invoice.number}</strong>" in html
    assert "DRAFT" not in html and "INVOICE</h1>" in html
    assert f"Please quote {invoice.number} and PO PO-4471 with your payment" in html
    assert "669.99" in html  # 450.00 + 219.99


def test_per_entry_lines_show_date_timekeeper_and_tidied_wording(client, root, october):
    policy = ClientPolicy.objects.get(client=october["client"])
    policy.group_lines_by = "entry"
    policy.save()
    meeting = make.category("client-meeting")
    make.rule(meeting, task="Meeting")
    make.entry(
        october["project"], october["ana"], notes="sync w/ client re: Q3 mtg", task="Meeting"
    )
    [invoice] = draft_invoices(period=OCTOBER).invoices
    client.force_login(root)
    html = html_of(client.get(print_url(invoice)))

    assert "<th>Date</th>" in html and "<th>Timekeeper</th>" in html
    assert "Client meeting: Sync with client regarding Q3 meeting" in html
    assert "sync w/ client" not in html
    assert ">Cleo Marsh</td>" in html and "6 Oct 2026" in html


def test_manual_lines_are_listed_above_the_subtotal_they_are_part_of(client, root, october):
    for kind, description, price in (
        ("fixed_fee", "Filing fee", D("250.00")),
        ("credit", "Goodwill credit", D("-100.00")),
    ):
        add_manual_line(
            client=october["client"],
            period=OCTOBER,
            user=root,
            kind=kind,
            description=description,
            quantity=D("1"),
            unit_price=price,
            reason="agreed with the client",
        )
    invoice = Invoice.objects.get(status="draft")
    document = invoice_document(invoice=invoice)

    body = {line.description: line.amount for line in document.lines}
    assert (body["Filing fee"], body["Goodwill credit"]) == ("250.00", "-100.00")
    assert document.adjustments == []
    assert sum(D(line.amount.replace(",", "")) for line in document.lines) == invoice.subtotal
    assert invoice.subtotal == D("819.99")  # 450.00 + 219.99 + 250.00 - 100.00


def test_invoice_page_offers_the_pdf_beside_the_printable_invoice(client, root, october):
    client.force_login(root)
    page = html_of(
        client.get(reverse("admin:invoices_invoice_change", args=[october["invoice"].pk]))
    )
    assert f'href="{print_url(october["invoice"])}"' in page
    assert f'href="{pdf_url(october["invoice"])}">PDF</a>' in page


# --- The PDF --------------------------------------------------------------------------------


def test_pdf_of_a_draft_says_draft_with_the_same_content(client, root, october):
    client.force_login(root)
    response = client.get(pdf_url(october["invoice"]))

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert f'filename="DRAFT-{october["invoice"].pk}.pdf"' in response["Content-Disposition"]
    text = pdf_text(response.content)
    for shown in (
        "DRAFT",
        "Northwind Consulting",
        "Tax ID: US-98-7654321",
        "PO-4471",
        "Net 14 days",
        "1.50 h",
        "1.3333 h",
        "No charge: 2.0 h internal meeting",
        "(Partner rate)",
        "669.99",
    ):
        assert shown in text, shown


def test_pdf_of_an_approved_invoice_has_its_number_and_total(client, root, october):
    invoice = approved(october, root)
    client.force_login(root)
    response = client.get(pdf_url(invoice))

    assert f'filename="{invoice.number}.pdf"' in response["Content-Disposition"]
    text = pdf_text(response.content)
    assert invoice.number in text and "669.99" in text and "INVOICE" in text
    assert "DRAFT" not in text


def _png() -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (60, 20), "navy").save(buffer, "PNG")
    return buffer.getvalue()


class _Logos(http.server.BaseHTTPRequestHandler):
    """/logo.png: a real PNG; /broken.png: one cut short (it downloads, then fails to decode)."""

    PNG = _png()

    def do_GET(self):
        body = self.PNG if self.path == "/logo.png" else self.PNG[:40]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def logo_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Logos)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pdf_embeds_the_firm_logo_and_goes_without_one_it_cannot_use(
    client, root, october, logo_server
):
    firm = Firm.objects.get(pk=1)
    firm.logo_url = f"{logo_server}/logo.png"
    firm.save()
    client.force_login(root)
    assert f'<img src="{logo_server}/logo.png"' in html_of(
        client.get(print_url(october["invoice"]))
    )
    reader = pypdf.PdfReader(io.BytesIO(client.get(pdf_url(october["invoice"])).content))
    assert len(reader.pages[0].images) == 1

    for unusable in (f"{logo_server}/broken.png", "http://127.0.0.1:9/nothing-listens.png"):
        firm.logo_url = unusable
        firm.save()
        response = client.get(pdf_url(october["invoice"]))
        assert response.status_code == 200, unusable
        assert "669.99" in pdf_text(response.content)  # the invoice, without its logo
        assert len(pypdf.PdfReader(io.BytesIO(response.content)).pages[0].images) == 0


# --- Wording and display, pure ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("notes", "tidied"),
    [
        ("sync w/ client", "Sync with client"),
        ("Meeting w/ GC re: discovery schedule", "Meeting with GC regarding discovery schedule"),
        ("call w/client", "Call with client"),
        ("mtg w/o agenda", "Meeting without agenda"),
        ("weekly mtgs  re:budget", "Weekly meetings regarding budget"),
        ("R&D b/c of outage", "R&D because of outage"),
        ("MTG prep", "Meeting prep"),
        ("mtgroom booking, saw/ it", "Mtgroom booking, saw/ it"),  # whole words only
        ("API work for iOS", "API work for iOS"),
        ("  ", ""),
    ],
)
def test_tidy_note(notes, tidied):
    assert tidy_note(notes) == tidied


def test_every_abbreviation_is_written_out():
    for short, long in ABBREVIATIONS:
        assert tidy_note(f"x {short} y") == f"X {long} y"


@pytest.mark.parametrize(
    ("worded", "notes", "category", "wording"),
    [
        # Nobody worded it (classification copies the note): category and tidied note.
        ("sync w/ client", "sync w/ client", "Client meeting", "Client meeting: Sync with client"),
        ("", "sync w/ client", "Client meeting", "Client meeting: Sync with client"),
        # A reviewer's or the model's wording is kept as written.
        ("Weekly status call", "sync w/ client", "Client meeting", "Weekly status call"),
        ("travel to site", "travel to site", "Travel", "Travel to site"),
        ("", "to client", "Travel", "Travel: To client"),
        ("", "", "Development", "Development"),
        ("", "development", "Development", "Development"),
        ("", "misc", "", "Misc"),
    ],
)
def test_client_wording(worded, notes, category, wording):
    assert client_wording(worded=worded, notes=notes, category_name=category) == wording


def test_wording_a_reviewer_or_the_model_chose_stands_even_where_it_repeats_the_note():
    kept = client_wording(
        worded="Bugfix: pagination", notes="Bugfix: pagination", category_name="Development"
    )
    chosen = client_wording(
        worded="Bugfix: pagination",
        notes="Bugfix: pagination",
        category_name="Development",
        deliberate=True,
    )
    assert (kept, chosen) == ("Development: Bugfix: pagination", "Bugfix: pagination")


@pytest.mark.parametrize(
    ("quantity", "shown", "in_words"),
    [
        (D("1.5000"), "1.50", "1.5"),
        (D("2.0000"), "2.00", "2.0"),
        (D("10.0000"), "10.00", "10.0"),
        (D("0.2500"), "0.25", "0.25"),
        (D("1.3333"), "1.3333", "1.3333"),
        (D("0.1250"), "0.1250", "0.125"),
    ],
)
def test_hours_are_never_rounded_for_display(quantity, shown, in_words):
    assert (hours_shown(quantity), hours_in_words(quantity)) == (shown, in_words)


# --- The rules file carries the firm's and clients' invoice details ------------------------------


@pytest.mark.django_db
def test_unchanged_rules_file_with_invoice_details_imports_with_no_change(northwind_dir):
    text = (northwind_dir / "rules.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["firm"]["tax_id"] and data["clients"][0]["po_number"]  # the demo has them
    import_rules(text)
    firm = Firm.objects.get(pk=1)
    assert (firm.address, firm.tax_id) == (data["firm"]["address"], data["firm"]["tax_id"])
    acme = ClientPolicy.objects.get(client__name="Acme Legal LLP")
    assert (acme.billing_email, acme.po_number) == (
        data["clients"][0]["billing_email"],
        data["clients"][0]["po_number"],
    )

    again = import_rules(text)

    assert not again.changed()
    assert again.firm == "unchanged" and again.policies.updated == 0
    exported = yaml.safe_load(export_rules())
    assert exported["firm"]["address"] == data["firm"]["address"]
    assert exported["clients"][0]["billing_address"] == data["clients"][0]["billing_address"]
