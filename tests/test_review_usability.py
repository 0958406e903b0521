"""The review desk's usability fixes found by the measured browser run (issue 16,
tests/test_review_month.py), checked without a browser: Django's test client on the real
PostgreSQL.

- A client that requires a billing code on every line, and has none for the category a
  reviewer picks, made the queue's decision "succeed" while its entries stayed pending; the
  queue now takes the code beside the category (kept for the client) or refuses before
  deciding anything.
- The invoice page links the next draft of its month, so approving a month is draft after
  draft without going back to the overview.
"""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from invoices.drafting import Period, draft_invoices
from invoices.models import BillingCode, Classification, Invoice
from invoices.review import decide_note
from tests import billing_fixtures as make

pytestmark = pytest.mark.django_db
OCTOBER = Period.month("2026-10")


@pytest.fixture
def month():
    """Acme requires billing codes and has one for client meetings only; Globex does not."""
    make.firm()
    meeting = make.category("client-meeting")
    pm = make.category("project-mgmt")
    internal = make.category("internal-meeting", billable=False)
    acme = make.client("Acme", require_billing_codes=True)
    globex = make.client("Globex")
    BillingCode.objects.create(client=acme, category=meeting, code="L120")
    acme_project, globex_project = make.project(acme, "ACME"), make.project(globex, "GLX")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")

    def note(text, project=acme_project, day=5):
        return make.entry(
            project, ana, day=dt.date(2026, 10, day), minutes=60, notes=text, task="Other"
        )

    entries = {
        "plan": note("updated project plan"),
        "plan_twin": note("Updated project plan", day=6),
        "sprint": note("sprint planning", day=7),
        "call": note("client call", day=8),
        "globex_plan": note("updated project plan", project=globex_project),
    }
    draft_invoices(period=OCTOBER)
    return {
        **entries,
        "meeting": meeting,
        "pm": pm,
        "internal": internal,
        "acme": acme,
        "globex": globex,
    }


@pytest.fixture
def reviewer():
    return User.objects.create_superuser("rita", "rita@example.com", "a-long-test-password")


def decide(client, month, note, category, **extra):
    return client.post(
        reverse("admin:invoices_classification_queue_decide"),
        {
            "month": "2026-10",
            "client": month["acme"].pk,
            "note": note,
            "category": category.pk,
            "billable": "",
            "description": "",
            "position": "0",
            **extra,
        },
        follow=True,
    )


def pending(entry) -> bool:
    return Classification.objects.get(entry=entry).needs_review


def test_the_queue_names_the_categories_a_coded_client_has_no_code_for(client, month, reviewer):
    client.force_login(reviewer)
    html = client.get(
        reverse("admin:invoices_classification_queue") + "?month=2026-10"
    ).content.decode()
    acme_row = html[html.index('data-group="Acme|updated project plan"') :]
    acme_row = acme_row[: acme_row.index("</tr>")]
    assert f'<option value="{month["pm"].pk}" data-no-code>' in acme_row
    assert f'<option value="{month["meeting"].pk}">' in acme_row  # L120
    assert 'name="billing_code"' in acme_row and "has none for Project mgmt:" in acme_row
    globex_row = html[html.index('data-group="Globex|updated project plan"') :]
    globex_row = globex_row[: globex_row.index("</tr>")]
    assert "data-no-code" not in globex_row and 'name="billing_code"' not in globex_row


def test_a_decision_that_would_stay_pending_for_want_of_a_code_is_refused(client, month, reviewer):
    client.force_login(reviewer)
    html = decide(client, month, "updated project plan", month["pm"]).content.decode()
    assert "Not decided: Acme requires a billing code on every line" in html
    assert "has none for Project mgmt" in html
    manual = Classification.objects.get(entry=month["plan"]).manual_category
    assert manual is None and pending(month["plan"])
    assert not BillingCode.objects.filter(client=month["acme"], category=month["pm"]).exists()


def test_the_code_typed_beside_the_category_is_kept_for_the_client_and_decides_it(
    client, month, reviewer
):
    # An earlier decision (before the code existed) left "sprint planning" pending.
    decide_note(
        client=month["acme"],
        normalized_notes=["sprint planning"],
        user=reviewer,
        category=month["pm"],
    )
    assert pending(month["sprint"])
    client.force_login(reviewer)
    html = decide(
        client, month, "updated project plan", month["pm"], billing_code=" L190 "
    ).content.decode()
    assert "2 entries of Acme decided (billing code L190 kept for Acme)" in html
    code = BillingCode.objects.get(client=month["acme"], category=month["pm"])
    assert code.code == "L190"
    for key in ("plan", "plan_twin", "sprint"):
        decided = Classification.objects.get(entry=month[key])
        assert (decided.category, decided.billing_code, decided.needs_review) == (
            month["pm"],
            "L190",
            False,
        )


def test_a_code_that_differs_from_the_clients_is_refused(client, month, reviewer):
    client.force_login(reviewer)
    html = decide(client, month, "client call", month["meeting"], billing_code="L999").content
    assert "Acme already bills Client meeting as L120" in html.decode()
    assert pending(month["call"])


def test_a_decision_that_bills_nothing_needs_no_code(client, month, reviewer):
    client.force_login(reviewer)
    html = decide(
        client, month, "updated project plan", month["pm"], billable="false"
    ).content.decode()
    assert "2 entries of Acme decided" in html
    assert not pending(month["plan"])


def test_the_invoice_page_links_the_next_draft_of_its_month(client, month, reviewer):
    client.force_login(reviewer)
    acme = Invoice.objects.get(client=month["acme"])
    globex = Invoice.objects.get(client=month["globex"])
    html = client.get(reverse("admin:invoices_invoice_change", args=[acme.pk])).content.decode()
    assert f'href="/admin/invoices/invoice/{globex.pk}/change/" id="next-draft"' in html
    html = client.get(reverse("admin:invoices_invoice_change", args=[globex.pk])).content.decode()
    assert f'href="/admin/invoices/invoice/{acme.pk}/change/" id="next-draft"' in html
    assert 'id="month-overview"' in html


# --- The invoice review page -------------------------------------------------------------------


def review_page(client, invoice) -> str:
    return client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).content.decode()


def test_the_long_reason_is_said_once_per_group_not_on_every_row(client, month, reviewer):
    client.force_login(reviewer)
    html = review_page(client, Invoice.objects.get(client=month["acme"]))
    reason = "no category: no rule or approved history matched"
    assert html.count(reason) == 1
    assert "Why 4 wait:" in html
    for position in range(4):
        assert f'id="pending-{position}"' in html


def test_resolving_an_entry_opens_the_page_at_the_next_pending_row(client, month, reviewer):
    client.force_login(reviewer)
    acme = Invoice.objects.get(client=month["acme"])
    response = client.post(
        reverse("admin:invoices_invoice_resolve", args=[acme.pk, month["call"].pk]),
        {"category": month["meeting"].pk, "billable": "", "position": "3"},
    )
    # Four pending, the resolved one leaves (no twin): the row now at place 3 is the last, 2.
    assert response.status_code == 302 and response["Location"].endswith("/change/#pending-2")
    response = client.post(
        reverse("admin:invoices_invoice_resolve", args=[acme.pk, month["sprint"].pk]),
        {"category": month["internal"].pk, "billable": "false", "position": "0"},
    )
    assert response["Location"].endswith("/change/#pending-0")


def test_the_review_page_expands_every_derivation_at_once(client, month, reviewer):
    decide_note(
        client=month["acme"],
        normalized_notes=["client call"],
        user=reviewer,
        category=month["meeting"],
    )
    draft_invoices(period=OCTOBER)
    client.force_login(reviewer)
    html = review_page(client, Invoice.objects.get(client=month["acme"]))
    assert 'id="expand-all"' in html and "Expand all derivations" in html
    assert 'querySelectorAll("#lines details")' in html


def test_a_stale_draft_says_so_and_cannot_be_approved_from_its_page(client, month, reviewer):
    decide_note(
        client=month["globex"],
        normalized_notes=["updated project plan"],
        user=reviewer,
        category=month["pm"],
    )
    globex = Invoice.objects.get(client=month["globex"])
    assert "stale" in globex.flags
    client.force_login(reviewer)
    html = review_page(client, globex)
    assert 'id="stale-banner"' in html and "rebuild it before approving" in html
    assert 'value="Approve" disabled title="Rebuild the stale draft first"' in html
    draft_invoices(period=OCTOBER)
    assert 'id="stale-banner"' not in review_page(client, globex)
