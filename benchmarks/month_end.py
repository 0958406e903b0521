"""Month-end benchmark: a synthetic firm month of N entries from CSV to invoice drafts.

    .venv/bin/python benchmarks/month_end.py                # N = 1,000, 10,000 and 100,000
    .venv/bin/python benchmarks/month_end.py --sizes 10000  # one size

Prints, per N and stage (import, classification, drafting): seconds, entries per second, SQL
queries; and the peak memory of the run. Each N runs in its own process on a fresh database
(`billables_bench` on the server of DATABASE_URL), so peak memory is that N's alone.
Figures are recorded in benchmarks/README.md. Nothing here asserts a time: it prints.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_SIZES = [1_000, 10_000, 100_000]
BENCH_DB = os.environ.get("BENCH_DB", "billables_bench")  # one per concurrent run

NOTES = [
    "Client call re: scope change",
    "sync w/ client",
    "Standup",
    "project work",
    "Drafted motion to compel",
    "Reviewed discovery responses",
    "Stakeholder interview",
    "Refactor auth middleware",
    "Bugfix: pagination",
    "Wireframes for checkout",
    "Travel to client site",
    "Team meeting",
    "Updated project plan",
    "Sprint planning",
    "Research: data retention rules",
    "Meeting w/ GC re: discovery schedule",
    "1:1 with Ben",
    "Prepared deposition outline",
    "Code review",
    "Kickoff with client team",
]
TASKS = [
    "Meetings",
    "Development",
    "Design",
    "Research",
    "Internal",
    "Travel",
    "Project Management",
]


def firm_rules(clients: int) -> str:
    """The Northwind rules plus synthetic clients with a spread of policies."""
    base = (ROOT / "data" / "northwind" / "rules.yaml").read_text()
    groups = ["entry", "category", "category_person", "task"]
    extra = []
    for i in range(clients):
        extra.append(
            f"- name: Bench Client {i:03d}\n"
            f"  currency: {'EUR' if i % 5 == 0 else 'USD'}\n"
            f"  rounding: {{increment_minutes: {[0, 6, 15][i % 3]}, mode: up, "
            f"locus: {'line' if i % 4 == 0 else 'entry'}}}\n"
            f"  group_lines_by: {groups[i % 4]}\n"
            f"  non_billable_categories: [internal-meeting, admin]\n"
            f"  show_non_billable: {'true' if i % 2 else 'false'}\n"
            f"  discount_percent: '{i % 7}'\n"
            f"  projects:\n"
            f"  - {{code: BC{i:03d}-A, name: Project A, billing: hourly}}\n"
            f"  - {{code: BC{i:03d}-B, name: Project B, billing: hourly}}\n"
        )
    return base.rstrip("\n") + "\n" + "".join(extra)


PEOPLE = [
    ("Ana", "Pereira", "ana@northwind.example"),
    ("Ben", "Okafor", "ben@northwind.example"),
    ("Cleo", "Marsh", "cleo@northwind.example"),
    ("Dara", "Quinn", "dara@northwind.example"),
    ("Eve", "Santos", "eve@northwind.example"),
    ("Finn", "Berg", "finn@contractors.example"),
    ("Gia", "Russo", "gia@contractors.example"),
    ("Hugo", "Laurent", "hugo@northwind.example"),
]


def synthetic_exports(n: int, clients: int, seed: int = 7) -> dict[str, bytes]:
    """N entries over October 2026, a third each as Harvest, Clockify and Toggl CSV."""
    rng = random.Random(seed)
    harvest, clockify, toggl = io.StringIO(), io.StringIO(), io.StringIO()
    h = csv.writer(harvest)
    h.writerow(
        [
            "Date",
            "Client",
            "Project",
            "Project Code",
            "Task",
            "Notes",
            "Hours",
            "Billable?",
            "First Name",
            "Last Name",
        ]
    )
    c = csv.writer(clockify, quoting=csv.QUOTE_ALL)
    c.writerow(
        [
            "Project",
            "Client",
            "Description",
            "Task",
            "User",
            "Email",
            "Type",
            "Billable",
            "Start Date",
            "Start Time",
            "End Date",
            "End Time",
            "Duration (h)",
            "Duration (decimal)",
        ]
    )
    t = csv.writer(toggl, quoting=csv.QUOTE_ALL)
    t.writerow(
        [
            "User",
            "Email",
            "Client",
            "Project",
            "Task",
            "Description",
            "Billable",
            "Start date",
            "Start time",
            "End date",
            "End time",
            "Duration",
        ]
    )
    for i in range(n):
        ci = rng.randrange(clients)
        client, project = f"Bench Client {ci:03d}", rng.choice(["A", "B"])
        first, last, email = rng.choice(PEOPLE)
        day = rng.randint(1, 31)
        minutes = rng.choice([6, 12, 15, 20, 30, 45, 60, 90, 120, 180, 240]) + rng.randint(0, 9)
        note = rng.choice(NOTES) + ("" if rng.random() < 0.7 else f" #{rng.randint(1, 400)}")
        task = rng.choice(TASKS)
        billable = "Yes" if rng.random() < 0.85 else "No"
        start_min = 8 * 60 + (i % 97) * 5  # distinct start times keep the keys distinct
        start = f"{start_min // 60 % 24:02d}:{start_min % 60:02d}:00"
        end_min = start_min + minutes
        end = f"{end_min // 60 % 24:02d}:{end_min % 60:02d}:00"
        duration = f"{minutes // 60:02d}:{minutes % 60:02d}:00"
        date_iso = f"2026-10-{day:02d}"
        kind = i % 3
        if kind == 0:
            hours = f"{minutes / 60:.2f}"  # test data: float is fine here
            h.writerow(
                [
                    date_iso,
                    client,
                    f"Project {project}",
                    f"BC{ci:03d}-{project}",
                    task,
                    note,
                    hours,
                    billable,
                    first,
                    last,
                ]
            )
        elif kind == 1:
            us = f"10/{day:02d}/2026"
            c.writerow(
                [
                    f"Project {project}",
                    client,
                    note,
                    task,
                    f"{first} {last}",
                    email,
                    "Regular",
                    billable,
                    us,
                    start,
                    us,
                    end,
                    duration,
                    f"{minutes / 60:.2f}",
                ]
            )
        else:
            t.writerow(
                [
                    f"{first} {last}",
                    email,
                    client,
                    f"Project {project}",
                    task,
                    note,
                    billable,
                    date_iso,
                    start,
                    date_iso,
                    end,
                    duration,
                ]
            )
    return {
        "bench_harvest.csv": harvest.getvalue().encode(),
        "bench_clockify.csv": clockify.getvalue().encode(),
        "bench_toggl.csv": ("\ufeff" + toggl.getvalue()).encode(),
    }


class QueryCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


@contextmanager
def stage(name: str, n: int, results: list):
    from django.db import connection

    counter = QueryCounter()
    load = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(counter):
        yield
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started  # this process only; PostgreSQL's CPU is not in it
    rate = n / seconds if seconds else float("inf")
    results.append((name, seconds, rate, counter.count, cpu, load))


def run_one(n: int) -> None:
    os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from invoices.classification import classify_entries, entries_to_classify
    from invoices.drafting import Period, draft_invoices
    from invoices.rulesfile import import_rules
    from timesheets.importing import import_file
    from timesheets.signals import entries_imported

    clients = 40
    import_rules(firm_rules(clients))
    exports = synthetic_exports(n, clients)
    # Imported from files, streamed as import_entries does (never a file whole); the limits
    # raised so that N = 1,000,000 (333,334 rows a file) is not refused.
    from django.conf import settings

    settings.IMPORT_MAX_ROWS = max(settings.IMPORT_MAX_ROWS, n)
    settings.IMPORT_MAX_FILE_BYTES = max(settings.IMPORT_MAX_FILE_BYTES, 300 * n)
    export_dir = Path(tempfile.mkdtemp(prefix="month_end_"))
    paths = []
    for name, content in exports.items():
        paths.append(export_dir / name)
        paths[-1].write_bytes(content)
    del exports, content
    results: list = []
    # Measure import alone: classification after import is measured as its own stage.
    receivers = entries_imported.receivers
    entries_imported.receivers = []
    peak_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with stage("import", n, results):
            for path in paths:
                with path.open("rb") as stream:
                    import_file(name=path.name, stream=stream)
    finally:
        entries_imported.receivers = receivers
        shutil.rmtree(export_dir)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  import: peak memory {peak_mb:.0f} MB (before it {peak_before_mb:.0f} MB)")
    with stage("classification", n, results):
        classify_entries(entries_to_classify())
    with stage("drafting", n, results):
        summary = draft_invoices(period=Period.month("2026-10"), reclassify=False)
    with stage("re-draft", n, results):
        draft_invoices(period=Period.month("2026-10"), reclassify=False)
    total = sum(r[1] for r in results[:3])
    total_cpu = sum(r[4] for r in results[:3])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"N = {n:,}: {len(summary.invoices)} invoices; CSV to drafts {total:.2f} s wall, "
        f"{total_cpu:.2f} s CPU (Python); peak memory {peak_mb:.0f} MB"
    )
    print(f"  {'stage':<15}{'wall s':>9}{'CPU s':>8}{'entries/s':>12}{'queries':>9}{'load':>7}")
    for name, seconds, rate, queries, cpu, load in results:
        print(f"  {name:<15}{seconds:>9.2f}{cpu:>8.2f}{rate:>12,.0f}{queries:>9}{load:>7.2f}")
    sys.stdout.flush()


def reset_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    subprocess.run(
        ["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {BENCH_DB}"], check=True
    )
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {BENCH_DB}"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=DEFAULT_SIZES)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one)
        return
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billables")
    bench_url = url.rsplit("/", 1)[0] + "/" + BENCH_DB
    for n in args.sizes:
        reset_database(url)
        subprocess.run(
            [sys.executable, __file__, "--one", str(n)],
            check=True,
            env={**os.environ, "BENCH_DATABASE_URL": bench_url},
        )
    reset_database(url)


if __name__ == "__main__":
    main()
