"""The demo month end, measured in a real browser (issue 16): Northwind's October 2026, loaded
as `bin/demo` loads it, from the first login through the review queue (one decision per
distinct (client, note) group) to all four invoices approved, and month two: November's
exports after October's approval, which memory decides almost entirely.

What the browser run counts and prints (to the terminal, whatever pytest's capture, and to
test-artifacts/review-month.json): the reviewer's decisions, clicks, choices made in a select,
texts typed, the wall time of each step, and every response's time as Chromium measured it
(request sent to response received, from Playwright's resource timing). Only the structure is
asserted: at most one decision per distinct group, every invoice approved. Times are printed,
never asserted (a shared CI machine is no stopwatch).

`REVIEW_MONTH_RECORD=1` also writes the figures to benchmarks/results/review_month.json and
the screenshots of the flow to docs/images/ (referenced from docs/review-flow.md); without it
the screenshots go to test-artifacts/ (gitignored) only.

As in tests/test_browser.py: Debian's Chromium (never `playwright install`), and every database
step between browser sessions, never inside one (Playwright's sync API runs an event loop in
this thread, where Django refuses database calls); the live server answers from its thread.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse
from playwright.sync_api import Locator, Page, expect, sync_playwright

from invoices.admin.review_queue import queue_groups
from invoices.drafting import Period
from invoices.management.commands.demo_users import DEMO_PASSWORD
from invoices.models import Category, Invoice, InvoiceStatus
from invoices.review import pending_entries
from timesheets.models import TimeEntry

CHROMIUM = Path("/usr/bin/chromium")
DATA = settings.BASE_DIR / "data" / "northwind"
ARTIFACTS = settings.BASE_DIR / "test-artifacts"
RECORD = os.environ.get("REVIEW_MONTH_RECORD") == "1"
SCREENSHOTS = settings.BASE_DIR / "docs" / "images" if RECORD else ARTIFACTS
RESULTS = settings.BASE_DIR / "benchmarks" / "results" / "review_month.json"
OCTOBER, NOVEMBER = "2026-10", "2026-11"
EXPORTS = {
    month: [
        f"harvest_detailed_time_{month}.csv",
        f"clockify_detailed_report_{month}.csv",
        f"toggl_detailed_{month}.csv",
    ]
    for month in (OCTOBER, NOVEMBER)
}
ROLES = importlib.import_module("invoices.migrations.0004_review_desk_roles")
# The reviewer's judgment, written down: the trackers' task says what the work was.
CATEGORY_OF_TASK = {
    "Meetings": "Client meeting",
    "Research": "Discovery & research",
    "Design": "Design",
    "Development": "Development",
    "Project Management": "Project management",
}
# Acme Legal LLP requires a (UTBMS) code on every line; its rules file gives none for project
# management, which the reviewer supplies with the first such decision.
NEW_CODES = {"Project management": "L190"}

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package "
    "(bin/test does, through bin/_setup.sh ensure_chromium)",
)


def load_month(month: str) -> None:
    """A month's exports imported and drafted, as bin/demo does for October."""
    call_command("import_entries", *(str(DATA / name) for name in EXPORTS[month]), verbosity=0)
    call_command("draft_invoices", "--period", month, verbosity=0)


@pytest.fixture
def demo():
    """bin/demo's month end: the rules, October's three exports, October drafted, the logins."""
    call_command("import_rules", str(DATA / "rules.yaml"), verbosity=0)
    load_month(OCTOBER)
    if Group.objects.filter(name__in=ROLES.ROLES).count() != len(ROLES.ROLES):
        ROLES.create_roles(django_apps, None)  # emptied by an earlier transactional test
    call_command("demo_users", verbosity=0)


def answers_for(period: Period) -> dict[str, str]:
    """The category the reviewer picks for each group of the queue, by the group's task."""
    answers = {}
    for group in queue_groups(period=period):
        (task,) = group.tasks  # every demo group is one task's
        answers[group.key] = CATEGORY_OF_TASK[task]
    return answers


@dataclass
class Run:
    """What the reviewer did in the browser, and how long the server took."""

    page: Page
    clicks: int = 0
    choices: int = 0
    typed: int = 0
    decisions: list[str] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)
    responses: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("response", self._record)

    def _record(self, response) -> None:
        self.responses.append(response)

    def fill(self, locator: Locator, text: str) -> None:
        locator.fill(text)
        self.typed += 1

    def choose(self, locator: Locator, label: str) -> None:
        locator.select_option(label=label)
        self.choices += 1

    def click(self, locator: Locator, step: str) -> None:
        """A click that loads a page (a link, or a form's POST and its redirect), timed from
        the click to the new page's load event."""
        started = time.perf_counter()
        with self.page.expect_navigation():
            locator.click()
        self.steps.append((step, time.perf_counter() - started))
        self.clicks += 1

    def press(self, locator: Locator) -> None:
        """A click that loads nothing (a button of the page's own script)."""
        locator.click()
        self.clicks += 1

    def shot(self, name: str, *, full_page: bool = False) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"review-{name}.png"), full_page=full_page)

    def timings(self) -> list[dict]:
        """Every response, with the milliseconds from sending the request to the end of the
        response (Chromium's resource timing; -1 where it has none)."""
        out = []
        for response in self.responses:
            request = response.request
            timing = request.timing
            start = timing.get("requestStart", -1)
            end = timing.get("responseEnd", -1)
            first_byte = timing.get("responseStart", -1)
            out.append(
                {
                    "method": request.method,
                    "path": response.url.split("://", 1)[-1].split("/", 1)[-1],
                    "status": response.status,
                    "kind": request.resource_type,
                    "ms_to_first_byte": round(first_byte - start, 1)
                    if start >= 0 and first_byte >= 0
                    else -1,
                    "ms_total": round(end, 1) if end >= 0 else -1,
                }
            )
        return out


def log_in(run: Run, base_url: str, username: str) -> None:
    page = run.page
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    run.fill(page.locator("#id_username"), username)
    run.fill(page.locator("#id_password"), DEMO_PASSWORD)
    run.click(page.locator("input[type=submit][value='Log in']"), "log in")
    expect(page.locator("#user-tools")).to_contain_text(username, ignore_case=True)


def log_out(run: Run) -> None:
    run.click(run.page.locator("#logout-form button"), "log out")


def browser_page(playwright):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    return browser, page


def decide_the_queue(run: Run, answers: dict[str, str]) -> None:
    """From the home page: the review queue, one decision per group until none is left, then
    "Rebuild all stale drafts" once."""
    page = run.page
    run.click(page.locator("#month-end-module a", has_text="Review queue"), "open queue")
    expect(page.locator("h1")).to_contain_text("Review queue")
    run.shot("1-queue")
    rows = page.locator("#queue tbody tr")
    while rows.count():
        row = rows.first
        key = row.get_attribute("data-group")
        assert key not in run.decisions, f"{key} decided twice"
        category = answers[key]
        run.choose(row.locator("select[name=category]"), category)
        if row.locator("option[data-no-code]", has_text=category).count():
            # The client bills with a code on every line and has none for the category yet.
            run.fill(row.locator("input[name=billing_code]"), NEW_CODES[category])
            row.scroll_into_view_if_needed()
            run.shot("2b-billing-code")
        if not run.decisions:
            run.shot("2-deciding")
        run.click(row.locator("input[type=submit][value^='Decide']"), "decide")
        expect(page.locator(".messagelist li.success")).to_contain_text(" decided")
        run.decisions.append(key)
        if len(run.decisions) == 1:
            run.shot("3-decided")
    expect(page.locator("#content-main")).to_contain_text("Nothing is pending review")
    run.shot("4-queue-done")
    run.click(page.locator("input[type=submit][value='Rebuild all stale drafts']"), "rebuild")
    expect(page.locator(".messagelist")).to_contain_text("rebuilt")


def approve_the_month(run: Run, month: str, count: int) -> None:
    """From the home page: the month-end overview, then each draft approved in turn."""
    page = run.page
    run.click(page.locator("#month-end-module a", has_text="Month-end overview"), "overview")
    run.click(page.locator("#overview a", has_text="draft #").first, "open draft")
    for n in range(count):
        expect(page.locator("#invoice-status")).to_have_text("Draft")
        if n == 0:
            run.press(page.locator("#expand-all"))
            expect(page.locator("#lines details").first).to_have_attribute("open", "")
            run.shot("5-invoice")
        run.click(page.locator("input[type=submit][value='Approve']"), "approve")
        expect(page.locator(".messagelist li.success")).to_contain_text("approved")
        if n < count - 1:
            run.click(page.locator("#next-draft"), "next draft")
    expect(page.locator(".month-links")).to_contain_text(f"no other draft of {month}")
    run.click(page.locator("#month-overview"), "overview")
    expect(page.locator("#overview tfoot")).to_contain_text(f"{count} approved")
    run.shot("6-approved", full_page=True)


def route_of(response: dict) -> str:
    """'POST admin/invoices/invoice/12/approve/' -> 'POST /admin/invoices/invoice/N/approve/'."""
    path = response["path"].split("?", 1)[0].split("#", 1)[0]
    return f"{response['method']} /" + re.sub(r"/\d+/", "/N/", path)


def report(run: Run, *, groups: int, entries: int, capsys) -> dict:
    responses = run.timings()
    documents = [r for r in responses if r["kind"] == "document"]
    slowest = max(documents, key=lambda r: r["ms_total"])
    by_step: dict[str, list[float]] = {}
    for step, seconds in run.steps:
        by_step.setdefault(step, []).append(seconds)
    by_route: dict[str, list[float]] = {}
    for r in documents:
        by_route.setdefault(route_of(r), []).append(r["ms_total"])
    figures = {
        "pending_entries": entries,
        "groups": groups,
        "decisions": len(run.decisions),
        "clicks": run.clicks,
        "choices": run.choices,
        "typed": run.typed,
        "responses": len(responses),
        "documents": len(documents),
        "slowest_document": slowest,
        "over_1s": [r for r in documents if r["ms_total"] > 1000],
        "steps": {
            step: {
                "count": len(times),
                "median_s": round(sorted(times)[len(times) // 2], 3),
                "max_s": round(max(times), 3),
            }
            for step, times in by_step.items()
        },
        "documents_by_route": {
            route: {
                "count": len(times),
                "median_ms": sorted(times)[len(times) // 2],
                "max_ms": max(times),
            }
            for route, times in sorted(by_route.items())
        },
        "statuses": dict(Counter(str(r["status"]) for r in responses)),
        # Static files (the admin's CSS, JS, icons) by count and the slowest; pages in full.
        "other_responses": {
            "count": len(responses) - len(documents),
            "slowest_ms": max(
                (r["ms_total"] for r in responses if r["kind"] != "document"), default=-1
            ),
        },
        "every_document": documents,
    }
    with capsys.disabled():
        print(
            f"\n\nreview month {OCTOBER}: {entries} pending entries in {groups} groups; "
            f"{len(run.decisions)} decisions, {run.clicks} clicks, {run.choices} choices, "
            f"{run.typed} texts typed; {len(documents)} pages and redirects "
            f"({len(responses)} responses); slowest {slowest['method']} /{slowest['path']} "
            f"{slowest['ms_total']} ms; {len(figures['over_1s'])} over 1 s"
        )
        for step, stats in figures["steps"].items():
            print(
                f"  {step:<12} x{stats['count']:<3} median {stats['median_s']:.3f} s, "
                f"max {stats['max_s']:.3f} s (click to page loaded)"
            )
        for route, stats in figures["documents_by_route"].items():
            print(
                f"  {route:<60} x{stats['count']:<3} median {stats['median_ms']:>7.1f} ms, "
                f"max {stats['max_ms']:>7.1f} ms (request sent to response received)"
            )
    ARTIFACTS.mkdir(exist_ok=True)
    text = json.dumps(figures, indent=2) + "\n"
    (ARTIFACTS / "review-month.json").write_text(text)
    if RECORD:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    return figures


@needs_chromium
@pytest.mark.django_db(transaction=True)
def test_the_demo_month_from_first_login_to_four_approved_invoices(live_server, demo, capsys):
    october = Period.month(OCTOBER)
    answers = answers_for(october)
    entries = pending_entries(period=october).count()
    drafts = Invoice.objects.filter(status=InvoiceStatus.DRAFT, period_start=october.start)
    assert drafts.count() == 4 and len(answers) > 1

    with sync_playwright() as playwright:
        browser, page = browser_page(playwright)
        run = Run(page)
        log_in(run, live_server.url, "ops")
        decide_the_queue(run, answers)
        log_out(run)
        log_in(run, live_server.url, "approver")
        approve_the_month(run, OCTOBER, 4)
        browser.close()

    figures = report(run, groups=len(answers), entries=entries, capsys=capsys)
    assert len(run.decisions) == len(set(run.decisions)) <= len(answers)
    assert figures["decisions"] <= figures["groups"]
    assert not pending_entries(period=october).exists()
    statuses = Invoice.objects.filter(period_start=october.start).values_list("status", flat=True)
    assert sorted(statuses) == [InvoiceStatus.APPROVED] * 4


def decide_the_queue_by_posts(client, period: Period) -> int:
    """The queue decided as the browser run decides it, by the same POSTs (Django's test
    client, logged in as ops): one per group, then "Rebuild all stale drafts". Returns the
    number of decisions."""
    url = reverse("admin:invoices_classification_queue_decide")
    decisions = 0
    while groups := queue_groups(period=period):
        group = groups[0]
        (task,) = group.tasks
        category = Category.objects.get(name=CATEGORY_OF_TASK[task])
        code = NEW_CODES.get(category.name, "") if category.pk in group.uncoded else ""
        response = client.post(
            url,
            {
                "month": f"{period.start:%Y-%m}",
                "client": group.client.pk,
                "note": group.normalized_notes,
                "category": category.pk,
                "billing_code": code,
                "position": "0",
            },
        )
        assert response.status_code == 302
        decisions += 1
        assert decisions <= 200, "the queue does not empty"
    client.post(
        reverse("admin:invoices_classification_queue_rebuild"), {"month": f"{period.start:%Y-%m}"}
    )
    return decisions


def approve_by_posts(client, period: Period) -> None:
    for invoice in Invoice.objects.filter(
        period_start=period.start, status=InvoiceStatus.DRAFT
    ).order_by("id"):
        client.post(
            reverse("admin:invoices_invoice_approve", args=[invoice.pk]),
            {"seen": invoice.drafted_at.isoformat()},
        )


@pytest.mark.django_db
def test_month_two_after_octobers_approval_leaves_under_5_pending_entries_per_100(
    client, demo, capsys
):
    october, november = Period.month(OCTOBER), Period.month(NOVEMBER)
    client.force_login(User.objects.get(username="approver"))
    october_decisions = decide_the_queue_by_posts(client, october)
    approve_by_posts(client, october)
    statuses = Invoice.objects.filter(period_start=october.start).values_list("status", flat=True)
    assert sorted(statuses) == [InvoiceStatus.APPROVED] * 4

    load_month(NOVEMBER)
    entries = TimeEntry.objects.filter(date__gte=november.start, date__lte=november.end)
    total = entries.count()
    waiting = pending_entries(period=november)
    pending = waiting.count()
    per_100 = Decimal(pending * 100) / total
    groups = queue_groups(period=november)
    with capsys.disabled():
        print(
            f"\n\nmonth two {NOVEMBER}: {total} entries imported after {october_decisions} "
            f"decisions and 4 approvals in {OCTOBER}; {pending} pending ({per_100:.1f} per "
            f"100) in {len(groups)} groups:"
        )
        for group in groups:
            print(f"  {group.client.name}: {group.notes!r} x{group.count}")
    assert total > 200
    assert per_100 < 5
