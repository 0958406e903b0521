"""Review-desk benchmark: how fast the admin pages of a large month render, and how many SQL
queries they make.

    .venv/bin/python benchmarks/review_page.py               # a 500-line invoice, 10,000 entries
    .venv/bin/python benchmarks/review_page.py --lines 1000 --entries 50000

Builds a synthetic month on a fresh database (`billables_bench_review` on the server of
DATABASE_URL): one client invoiced one line per entry with `--lines` billable entries and 20
pending ones, plus `--clients` other clients sharing `--entries` entries, all drafted. Then it
requests each page through Django's test client (the whole stack: middleware, admin, templates)
as a logged-in approver and prints, per page, the first request and the median of the next
five (milliseconds) and the SQL queries of one request. Targets: the review page of a 500-line
invoice under 1 s; the invoice and entry lists under 15 queries whatever the number of rows.
Nothing here asserts: it prints. Figures are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "billables_bench_review"
PENDING = 20
REPEATS = 5
NOTES = [
    "Drafted motion to compel",
    "Reviewed discovery responses",
    "Refactor auth middleware",
    "Wireframes for checkout",
    "Stakeholder interview",
    "Prepared deposition outline",
    "Code review",
    "Research: data retention rules",
]


def build_month(*, lines: int, clients: int, entries: int):
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.utils import timezone

    from invoices.drafting import Period, draft_invoices
    from invoices.models import Category, ClassificationRule, ClientPolicy, Firm, Rate
    from timesheets.models import Client, Person, Project, TimeEntry
    from timesheets.notes import normalize_notes

    period = Period.month("2026-10")
    firm = Firm.load()
    firm.name, firm.default_rate = "Bench firm", Decimal("150.00")
    firm.save()
    dev = Category.objects.create(key="development", name="Development", billing_code="L250")
    ClassificationRule.objects.create(category=dev, task="Development")
    people = [
        Person.objects.create(email=f"p{i}@bench.example", name=f"Person {i}", role=role)
        for i, role in enumerate(["Partner", "Senior", "Consultant", "Consultant"])
    ]
    Rate.objects.create(role="Partner", rate=Decimal("300.00"))
    all_clients = Client.objects.bulk_create(
        [Client(name="Big Client")] + [Client(name=f"Client {i:04d}") for i in range(clients)]
    )
    ClientPolicy.objects.bulk_create(
        [
            ClientPolicy(client=c, rounding_increment_minutes=6, group_lines_by="entry")
            for c in all_clients
        ]
    )
    projects = Project.objects.bulk_create(
        [
            Project(client=c, code=f"P{i:05d}", name=f"Project {i}")
            for i, c in enumerate(all_clients)
        ]
    )
    now = timezone.now()

    def entry(n, project, task="Development"):
        notes = NOTES[n % len(NOTES)] + f" #{n}"
        return TimeEntry(
            source="csv",
            external_id=f"bench-{n}",
            person=people[n % len(people)],
            client_id=project.client_id,
            project=project,
            task=task,
            date=period.start + dt.timedelta(days=n % 31),
            duration_seconds=900 + (n % 13) * 300,
            notes=notes,
            normalized_notes=normalize_notes(notes),
            content_hash=f"h{n}",
            created_at=now,
        )

    big = [entry(n, projects[0]) for n in range(lines)]
    big += [entry(lines + n, projects[0], task="Other") for n in range(PENDING)]
    rest = [
        entry(lines + PENDING + n, projects[1 + n % clients] if clients else projects[0])
        for n in range(entries)
    ]
    TimeEntry.objects.bulk_create(big + rest, batch_size=5000)
    summary = draft_invoices(period=period)
    user = User.objects.create_superuser("bench", "bench@example.com", "bench-password")
    big_invoice = next(inv for inv in summary.invoices if inv.client_id == all_clients[0].id)
    return user, big_invoice, len(summary.invoices)


def measure(client, url: str) -> tuple[float, float, int]:
    from django.db import connection

    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    started = time.perf_counter()
    with connection.execute_wrapper(count):
        response = client.get(url)
    first = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        client.get(url)
        times.append(time.perf_counter() - started)
    return first * 1000, statistics.median(times) * 1000, len(queries)


def run(args) -> None:
    os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    user, invoice, invoices = build_month(
        lines=args.lines, clients=args.clients, entries=args.entries
    )
    print(
        f"Month built in {time.perf_counter() - started:.1f} s: {invoice.label} has "
        f"{invoice.lines.count()} lines and {PENDING} pending entries; {invoices} invoices, "
        f"{args.lines + PENDING + args.entries:,} entries in all."
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    client.get(reverse("admin:index"))  # session and caches warm
    pages = [
        (
            f"review page ({args.lines} lines)",
            reverse("admin:invoices_invoice_change", args=[invoice.pk]),
        ),
        ("printable invoice", reverse("admin:invoices_invoice_print", args=[invoice.pk])),
        ("month-end overview", reverse("admin:invoices_invoice_month") + "?month=2026-10"),
        ("invoice list", reverse("admin:invoices_invoice_changelist")),
        ("classification list", reverse("admin:invoices_classification_changelist")),
        ("time entry list", reverse("admin:timesheets_timeentry_changelist")),
        ("audit trail", reverse("admin:invoices_auditrecord_changelist")),
    ]
    print(f"  {'page':<28}{'first ms':>10}{'median ms':>11}{'queries':>9}")
    for name, url in pages:
        first, median, queries = measure(client, url)
        print(f"  {name:<28}{first:>10.0f}{median:>11.0f}{queries:>9}")
    sys.stdout.flush()


def reset_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    for sql in (f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=500, help="lines of the reviewed invoice")
    parser.add_argument("--clients", type=int, default=199, help="other clients")
    parser.add_argument("--entries", type=int, default=10_000, help="other clients' entries")
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args)
        return
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billables")
    reset_database(url)
    try:
        subprocess.run(
            [sys.executable, __file__, "--run", *sys.argv[1:]],
            check=True,
            env={**os.environ, "BENCH_DATABASE_URL": url.rsplit("/", 1)[0] + "/" + BENCH_DB},
        )
    finally:
        reset_database(url)


if __name__ == "__main__":
    main()
