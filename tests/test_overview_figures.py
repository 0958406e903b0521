"""The month-end overview (issue 16): beside each draft total, the draft's pending hours and
their standard value and the late time of earlier periods it bills; and each voided invoice
linked to its successor. Django's test client on the real PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from invoices.approval import approve_invoice, void_invoice
from invoices.classification import classify_entries, entries_to_classify
from invoices.drafting import Period, draft_invoices
from invoices.models import Invoice
from invoices.month_end_figures import pending_values, voided_with_successors
from invoices.review import correct_entry
from tests import billing_fixtures as make

pytestmark = pytest.mark.django_db

OCTOBER, NOVEMBER = Period.month("2026-10"), Period.month("2026-11")


@pytest.fixture
def month():
    """Acme's October draft: 90 minutes the task rule prices at 200/h (300.00), and two vague
    notes no tier decides, 30 minutes by the partner (200/h) and 15 by the associate (120/h),
    pending: 0.75 h worth 130.00."""
    make.firm()
    dev = make.category("development")
    acme = make.client("Acme")
    project = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    ben = make.person("Ben Okafor", "Associate")
    make.rate("200.00", role="Partner")
    make.rate("120.00", role="Associate")
    make.rule(dev, task="Dev")
    make.entry(project, ana, minutes=90, notes="Drafted the motion")
    vague = [
        make.entry(project, ana, minutes=30, notes="misc", task="Other"),
        make.entry(project, ben, minutes=15, notes="admin", task="Other"),
    ]
    [draft] = draft_invoices(period=OCTOBER).invoices
    admin = User.objects.create_superuser("root", "root@example.com", "a-long-test-password")
    return {
        "draft": draft,
        "dev": dev,
        "project": project,
        "ana": ana,
        "vague": vague,
        "admin": admin,
    }


def overview(client, month_text: str) -> str:
    url = reverse("admin:invoices_invoice_month") + f"?month={month_text}"
    return client.get(url).content.decode()


def cell(html: str, css_class: str) -> str:
    found = re.search(rf'<td class="num {css_class}">(.*?)</td>', html, re.S)
    assert found, f"no {css_class} cell"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_pending_hours_and_their_standard_value_beside_the_draft_total(client, month):
    figures = pending_values([month["draft"]])[month["draft"].pk]
    assert (figures.hours, str(figures.value), figures.unpriced) == (
        pytest.approx(0.75),
        "130.00",
        0,
    )
    client.force_login(month["admin"])
    html = overview(client, "2026-10")
    assert "Pending: hours, value" in html
    assert cell(html, "pending-value") == "0.75 h130.00 USD"  # on two lines


def test_a_draft_with_nothing_pending_shows_none(client, month):
    for entry in month["vague"]:
        correct_entry(entry=entry, user=month["admin"], category=month["dev"])
    client.force_login(month["admin"])
    assert cell(overview(client, "2026-10"), "pending-value") == "-"


def test_late_time_of_an_earlier_period_is_shown_beside_the_total(client, month):
    for entry in month["vague"]:
        correct_entry(entry=entry, user=month["admin"], category=month["dev"])
    approve_invoice(invoice=month["draft"], user=month["admin"])
    late = make.entry(
        month["project"], month["ana"], minutes=90, day=dt.date(2026, 10, 28), notes="Late call"
    )
    classify_entries(entries_to_classify(entry_ids=[late.pk]))
    make.entry(month["project"], month["ana"], minutes=30, day=dt.date(2026, 11, 3))
    draft_invoices(period=NOVEMBER)
    client.force_login(month["admin"])
    html = overview(client, "2026-11")
    assert "incl. 1.5000 h late time" in html


def test_a_voided_invoice_links_its_successor(client, month):
    first = month["draft"]
    void_invoice(invoice=first, user=month["admin"], reason="wrong client contact")
    [successor] = draft_invoices(period=OCTOBER).invoices
    assert successor.pk != first.pk
    [voided] = voided_with_successors(Invoice.objects.filter(period_start=OCTOBER.start))
    assert (voided.invoice, voided.successor, voided.reason) == (
        first,
        successor,
        "wrong client contact",
    )
    client.force_login(month["admin"])
    html = overview(client, "2026-10")
    successor_url = reverse("admin:invoices_invoice_change", args=[successor.pk])
    assert 'id="voided"' in html and "(wrong client contact)" in html
    assert f'<a href="{successor_url}" class="successor">{successor.label}</a>' in html


def test_a_voided_invoice_without_a_successor_says_so(client, month):
    void_invoice(invoice=month["draft"], user=month["admin"], reason="duplicate")
    client.force_login(month["admin"])
    assert "nothing drafted in its place yet" in overview(client, "2026-10")


def test_the_invoice_pages_link_a_void_and_its_successor_both_ways(client, month):
    first = month["draft"]
    void_invoice(invoice=first, user=month["admin"], reason="wrong client contact")
    client.force_login(month["admin"])
    page = reverse("admin:invoices_invoice_change", args=[first.pk])
    assert "Void; nothing has been drafted in its place yet." in client.get(page).content.decode()
    [successor] = draft_invoices(period=OCTOBER).invoices
    successor_page = reverse("admin:invoices_invoice_change", args=[successor.pk])
    html = client.get(page).content.decode()
    assert f'replaced by <a href="{successor_page}">{successor.label}</a>' in html
    html = client.get(successor_page).content.decode()
    assert f'Replaces the voided <a href="{page}">{first.label}</a>' in html
