"""The review desk end to end in a real browser: Debian's headless Chromium driven by
Playwright against the live server, on the Northwind demo month.

Ops staff log in, open the month-end overview and an invoice, resolve a pending entry in place
and see the total change; an approver approves and sees the invoice read-only. Screenshots go
to test-artifacts/ (gitignored; CI keeps them as artifacts).

Playwright's sync API runs an event loop in this thread while a browser session is open, and
Django refuses database calls from a thread with a running loop. So every database step here
happens between browser sessions, never inside one (no DJANGO_ALLOW_ASYNC_UNSAFE); the live
server answers the browser from its own thread.

Chromium is Debian's package (`apt-get install chromium`, done by bin/test through
bin/_setup.sh), never a browser downloaded by `playwright install`.
"""

import importlib
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from invoices.drafting import rebuild_invoice
from invoices.models import Category, Classification, Invoice, InvoiceEntry, InvoiceStatus

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = settings.BASE_DIR / "test-artifacts"
DATA = settings.BASE_DIR / "data" / "northwind"
EXPORTS = [
    "harvest_detailed_time_2026-10.csv",
    "clockify_detailed_report_2026-10.csv",
    "toggl_detailed_2026-10.csv",
]
ROLES = importlib.import_module("invoices.migrations.0004_review_desk_roles")
PASSWORD = "a-long-browser-password"
# USD, one line per entry, hourly, no cap, a billing code for Development: a resolved entry
# moves the total (Umbrella Health, the earlier choice, now bills a fixed fee).
CLIENT = "Acme Legal LLP"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package "
        "(bin/test does, through bin/_setup.sh ensure_chromium)",
    ),
]


@pytest.fixture
def demo_month():
    """The demo's month end as bin/demo sets it up, and one user per role."""
    call_command("import_rules", str(DATA / "rules.yaml"), verbosity=0)
    call_command("import_entries", *(str(DATA / name) for name in EXPORTS), verbosity=0)
    call_command("draft_invoices", "--period", "2026-10", verbosity=0)
    if Group.objects.filter(name__in=ROLES.ROLES).count() != len(ROLES.ROLES):
        ROLES.create_roles(django_apps, None)  # emptied by an earlier transactional test
    users = {}
    for username, group in (("olga", ROLES.OPS_STAFF), ("arne", ROLES.APPROVERS)):
        user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        users[username] = user
    invoice = Invoice.objects.get(client__name=CLIENT, status=InvoiceStatus.DRAFT)
    return {"invoice": invoice, **users}


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit][value='Log in']")
    expect(page.locator("#user-tools")).to_contain_text(username.upper(), ignore_case=True)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"review-desk-{name}.png"), full_page=True)


def money(page: Page, selector: str) -> Decimal:
    return Decimal(page.inner_text(selector).strip())


def browser_session(playwright):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)
    return browser, page


def test_ops_staff_resolve_and_an_approver_approves(live_server, demo_month):
    invoice = demo_month["invoice"]
    pending = InvoiceEntry.objects.filter(invoice=invoice, state="pending")
    pending_before = pending.count()
    assert pending_before > 1
    # The page lists pending entries by date, person, id; deciding the first decides every
    # pending entry of the client with the same note at once (spec 2.3).
    first = pending.order_by("entry__date", "entry__person__name", "entry__id").first().entry
    same_note = pending.filter(entry__normalized_notes=first.normalized_notes).count()

    # Ops staff: the overview, the invoice, one pending entry resolved in place.
    with sync_playwright() as playwright:
        browser, page = browser_session(playwright)
        log_in(page, live_server.url, "olga")
        page.click("text=Month-end overview")
        expect(page.locator("h1")).to_contain_text("Month end October 2026")
        expect(page.locator("#overview")).to_contain_text(CLIENT)
        shot(page, "1-overview")
        page.locator("#overview tr", has_text=CLIENT).locator("a").first.click()
        expect(page.locator("#invoice-status")).to_have_text("Draft")
        assert page.locator("input[value='Approve']").count() == 0  # ops staff cannot
        total_before = money(page, "#invoice-total")
        row = page.locator("#pending tr[id^=pending-]").first
        row.locator("select[name=category]").select_option(label="Development")
        row.locator("input[name=description]").fill("Portal development (reviewed)")
        shot(page, "2-resolving")
        row.locator("input[type=submit][value='Resolve']").click()
        expect(page.locator(".messagelist")).to_contain_text("resolved")
        expect(page.locator("#pending-count")).to_have_text(str(pending_before - same_note))
        total_after = money(page, "#invoice-total")
        assert total_after > total_before
        expect(page.locator("#lines")).to_contain_text("Portal development (reviewed)")
        shot(page, "3-resolved")
        browser.close()

    invoice.refresh_from_db()
    assert invoice.total == total_after and invoice.status == InvoiceStatus.DRAFT
    resolved = Classification.objects.get(manual_description="Portal development (reviewed)")
    assert (resolved.tier, resolved.manual_by) == ("manual", demo_month["olga"])

    # The rest of the pending entries, as if resolved the same way (one rebuild, not 50 clicks).
    rest = InvoiceEntry.objects.filter(invoice=invoice, state="pending").values("entry_id")
    Classification.objects.filter(entry_id__in=rest).update(
        manual_billable=False, manual_by=demo_month["olga"], manual_at=timezone.now()
    )
    invoice = rebuild_invoice(invoice, user=demo_month["olga"])
    assert not InvoiceEntry.objects.filter(invoice=invoice, state="pending").exists()
    assert Category.objects.filter(name="Development").exists()

    # An approver: approve, then the page is read-only.
    with sync_playwright() as playwright:
        browser, page = browser_session(playwright)
        log_in(page, live_server.url, "arne")
        page.goto(f"{live_server.url}/admin/invoices/invoice/{invoice.pk}/change/")
        expect(page.locator("#pending-count")).to_have_text("0")
        page.click("input[type=submit][value='Approve']")
        expect(page.locator(".messagelist")).to_contain_text("INV-2026-0001 approved")
        expect(page.locator("#invoice-status")).to_have_text("Approved")
        expect(page.locator("h1")).to_contain_text("View invoice")
        expect(page.locator(".review .headline")).to_contain_text("read-only")
        for label in ("Approve", "Rebuild", "Resolve", "Save"):
            assert page.locator(f"input[value='{label}']").count() == 0
        shot(page, "4-approved")
        with page.expect_popup() as popup:
            page.click("text=Printable invoice")
        printable = popup.value
        expect(printable.locator("body")).to_contain_text(f"Total due ({invoice.currency})")
        expect(printable.locator("body")).not_to_contain_text("DRAFT")
        shot(printable, "5-printable")
        browser.close()

    invoice.refresh_from_db()
    assert (invoice.status, invoice.approved_by) == (InvoiceStatus.APPROVED, demo_month["arne"])
