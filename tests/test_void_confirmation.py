"""Voiding needs a confirmation and a reason (issue 16): the admin refuses a void without a
reason and changes nothing; the invoice page's Void form requires the reason and asks the
browser to confirm, and a dismissed confirmation voids nothing (Debian's Chromium, as
tests/test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import sync_playwright

from invoices.drafting import Period, draft_invoices
from invoices.models import Invoice, InvoiceEvent, InvoiceStatus
from tests import billing_fixtures as make

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a-long-test-password"
OCTOBER = Period.month("2026-10")


def a_draft() -> Invoice:
    make.firm()
    dev = make.category("development")
    acme = make.client("Acme")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    make.entry(make.project(acme, "ACME"), make.person(), minutes=90, notes="Drafted the motion")
    [draft] = draft_invoices(period=OCTOBER).invoices
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    return draft


@pytest.mark.django_db
def test_a_void_without_a_reason_is_refused_and_changes_nothing(client):
    draft = a_draft()
    client.force_login(User.objects.get(username="root"))
    page = client.post(
        reverse("admin:invoices_invoice_void", args=[draft.pk]), {"reason": "  "}, follow=True
    )
    assert [str(m) for m in page.context["messages"]] == [
        f"{draft.label} was not voided: give the reason for voiding it."
    ]
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.DRAFT
    assert not InvoiceEvent.objects.filter(invoice=draft, action="void").exists()
    form = client.get(reverse("admin:invoices_invoice_change", args=[draft.pk])).content.decode()
    assert (
        'name="reason" placeholder="reason for voiding" aria-label="reason for voiding" required'
        in form
    )
    assert 'data-confirm="Void ' in form


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_the_browser_asks_before_voiding(live_server):
    draft = a_draft()
    asked = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "root")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit][value='Log in']")
        page.goto(f"{live_server.url}/admin/invoices/invoice/{draft.pk}/change/")
        page.fill("#void-form input[name=reason]", "duplicate of another draft")

        def dismiss(dialog):
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.click("#void-form input[type=submit][value='Void']")
        status_after_dismiss = page.inner_text("#invoice-status")
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        with page.expect_navigation():
            page.click("#void-form input[type=submit][value='Void']")
        status_after_accept = page.inner_text("#invoice-status")
        browser.close()
    assert len(asked) == 2 and asked[0].startswith(f"Void {draft.label} (")
    assert (status_after_dismiss, status_after_accept) == ("Draft", "Void")
    assert Invoice.objects.get(pk=draft.pk).status == InvoiceStatus.VOID
