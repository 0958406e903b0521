"""The review pages fit a 1400 px wide window with the admin's side menu open (issue 16): no
table of the invoice review page (every derivation expanded), the month overview or the
Classifications list is
wider than the element that holds it, and the page does not scroll sideways.

Measured in Debian's Chromium at 1400 x 900 (as tests/test_browser.py; never `playwright
install`). Every database step happens before the browser session opens (Playwright's sync
API runs an event loop in this thread, where Django refuses database calls).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import Page, sync_playwright

from invoices.models import Invoice, InvoiceStatus

CHROMIUM = Path("/usr/bin/chromium")
DATA = settings.BASE_DIR / "data" / "northwind"
ARTIFACTS = settings.BASE_DIR / "test-artifacts"
PASSWORD = "a-long-browser-password"
EXPORTS = [
    "harvest_detailed_time_2026-10.csv",
    "clockify_detailed_report_2026-10.csv",
    "toggl_detailed_2026-10.csv",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

# Every table's right edge against its container's, and the page's width against the window's.
OVERFLOWS = """() => {
  const out = [];
  for (const table of document.querySelectorAll('#content table')) {
    if (!table.offsetParent) continue;  // inside a closed <details>: not shown
    const box = table.parentElement.getBoundingClientRect();
    const right = table.getBoundingClientRect().right;
    if (right > box.right + 1) {
      out.push(`${table.id || table.className || 'table'}: ${Math.round(right)} px, ` +
               `its container ends at ${Math.round(box.right)} px`);
    }
  }
  const page = document.scrollingElement.scrollWidth;
  if (page > window.innerWidth) out.push(`the page is ${page} px wide in ${window.innerWidth}`);
  return out;
}"""


@pytest.fixture
def demo_month():
    """The demo's October drafted as bin/demo drafts it, and a superuser (every column)."""
    call_command("import_rules", str(DATA / "rules.yaml"), verbosity=0)
    call_command("import_entries", *(str(DATA / name) for name in EXPORTS), verbosity=0)
    call_command("draft_invoices", "--period", "2026-10", verbosity=0)
    User.objects.create_superuser("wide", "wide@example.com", PASSWORD)
    drafts = Invoice.objects.filter(status=InvoiceStatus.DRAFT).order_by("id")
    return list(drafts.values_list("pk", flat=True))


def log_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "wide")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit][value='Log in']")
    page.wait_for_selector("#user-tools")


def overflows(page: Page, name: str) -> list[str]:
    assert page.locator("#nav-sidebar").is_visible(), "the side menu is open"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"fit-{name}.png"))
    return [f"{name}: {problem}" for problem in page.evaluate(OVERFLOWS)]


def test_review_pages_fit_1400_px_with_the_side_menu_open(live_server, demo_month):
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        log_in(page, live_server.url)
        for pk in demo_month:
            page.goto(f"{live_server.url}/admin/invoices/invoice/{pk}/change/")
            page.click("#expand-all")
            problems += overflows(page, f"invoice-{pk}")
        page.goto(f"{live_server.url}/admin/invoices/invoice/month/?month=2026-10")
        problems += overflows(page, "month-overview")
        page.goto(f"{live_server.url}/admin/invoices/classification/")
        problems += overflows(page, "classifications")
        page.goto(f"{live_server.url}/admin/invoices/classification/?needs_review__exact=1")
        problems += overflows(page, "classifications-pending")
        browser.close()
    assert not problems, "\n".join(problems)
