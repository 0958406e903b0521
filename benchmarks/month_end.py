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
import json
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


def run_one(n: int, clients: int = 40, path: str = "stages") -> None:
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
    if path == "user":
        run_user_path(n, paths, export_dir)
        return
    parse_floor = csv_parse_floor(paths)
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
    print_floors(results, parse_floor, copy_floor(), pricing_floor(Period.month("2026-10")))
    sys.stdout.flush()
    if os.environ.get("BENCH_RESULTS"):  # for the parent's linearity summary
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(json.dumps({"n": n, "stages": [r[:2] + r[4:5] for r in results]}) + "\n")


def csv_parse_floor(paths: list[Path]) -> tuple[float, float]:
    """Wall and CPU seconds of `csv.reader` alone over the export files: the least any
    import can cost in Python."""
    started, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            for _row in csv.reader(stream):
                pass
    return time.perf_counter() - started, time.process_time() - cpu


def copy_floor() -> tuple[float, float]:
    """Wall and CPU seconds of COPY of the imported entries into a table of the same shape
    with the same indexes and constraints (no triggers): the least the database side of an
    import can cost."""
    from django.db import connection

    with tempfile.TemporaryFile() as spool, connection.cursor() as cursor:
        with cursor.cursor.copy("COPY timesheets_timeentry TO STDOUT") as copy:
            for block in copy:
                spool.write(block)
        spool.seek(0)
        cursor.execute(
            "CREATE TEMPORARY TABLE floor_timeentry (LIKE timesheets_timeentry INCLUDING ALL)"
        )
        started, cpu = time.perf_counter(), time.process_time()
        with cursor.cursor.copy("COPY floor_timeentry FROM STDIN") as copy:
            while block := spool.read(1 << 20):
                copy.write(block)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        cursor.execute("DROP TABLE floor_timeentry")
    return seconds, cpu


def pricing_floor(period) -> tuple[float, float]:
    """Wall and CPU seconds of `invoices.core.pricing.price_invoice` alone over every
    client's drafted entries (loaded beforehand, not timed): the least drafting can cost."""
    from invoices.configuration import load_configuration
    from invoices.core.pricing import price_invoice
    from invoices.drafting_inputs import load_inputs
    from timesheets.models import Client

    ids = list(Client.objects.values_list("pk", flat=True))
    config = load_configuration(ids)
    # The drafts hold the entries now: load them as drafting sees them, drafts released.
    inputs = load_inputs(
        client_ids=ids,
        start=period.start,
        end=period.end,
        bill_approved_only={c: config.policy(c).bill_approved_only for c in ids},
        release_drafts=True,
    )
    started, cpu = time.perf_counter(), time.process_time()
    for client_id, each in inputs.items():
        price_invoice(
            each.entries,
            policy=config.policy(client_id),
            rates=config.rates,
            client=client_id,
            manual=each.manual,
        )
    return time.perf_counter() - started, time.process_time() - cpu


def print_floors(results: list, parse: tuple, copy: tuple, pricing: tuple) -> None:
    stages = {name: (seconds, cpu) for name, seconds, _rate, _q, cpu, _load in results}
    load = os.getloadavg()[0]
    print(f"  floors (same run, load {load:.2f}): wall s / CPU s, and the stage's ratio to it")
    import_floor = (parse[0] + copy[0], parse[1] + copy[1])
    for label, floor, stage_name in (
        ("csv.reader + COPY", import_floor, "import"),
        ("price_invoice alone", pricing, "drafting"),
    ):
        wall, cpu = stages[stage_name]
        print(
            f"  {label:<22}{floor[0]:>7.2f}{floor[1]:>7.2f}   {stage_name} is "
            f"{wall / floor[0]:.1f}x its wall, {cpu / max(floor[1], 1e-9):.1f}x its CPU"
        )
    print(f"    (csv.reader {parse[0]:.2f} s, {parse[1]:.2f} CPU; COPY {copy[0]:.2f} s)")


def print_linearity(path: Path) -> None:
    """Each stage's wall and CPU seconds per entry at each N, relative to the first N of at
    least 10,000 (1.00 is perfectly linear; the issue asks for within 20%)."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line]
    runs = [r for r in runs if r["n"] >= 10_000]
    if len(runs) < 2:
        return
    base = {
        name: (wall / runs[0]["n"], cpu / runs[0]["n"]) for name, wall, cpu in runs[0]["stages"]
    }
    print(f"linearity: seconds per entry relative to N = {runs[0]['n']:,} (wall / CPU)")
    for run in runs[1:]:
        cells = []
        for name, wall, cpu in run["stages"]:
            b_wall, b_cpu = base[name]
            cells.append(
                f"{name} {wall / run['n'] / b_wall:.2f} / {cpu / run['n'] / max(b_cpu, 1e-12):.2f}"
            )
        print(f"  N = {run['n']:,}: " + ", ".join(cells))


def run_user_path(n: int, paths: list[Path], export_dir: Path) -> None:
    """What ops staff run: each file uploaded (imported, then classified on import as the
    admin's upload does), then the overview's Draft button (reclassify and draft)."""
    from invoices.drafting import Period, draft_invoices
    from timesheets.importing import import_file

    results: list = []
    try:
        with stage("upload", n, results):
            for path in paths:
                with path.open("rb") as stream:
                    import_file(name=path.name, stream=stream)
    finally:
        shutil.rmtree(export_dir)
    with stage("draft button", n, results):
        summary = draft_invoices(period=Period.month("2026-10"))
    wall = sum(r[1] for r in results)
    cpu = sum(r[4] for r in results)
    print(
        f"N = {n:,}, user path: {len(summary.invoices)} invoices; upload to drafts "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU (Python)"
    )
    for name, seconds, _rate, queries, cpu, load in results:
        print(f"  {name:<15}{seconds:>9.2f}{cpu:>8.2f}{queries:>9}{load:>7.2f}")
    sys.stdout.flush()


def run_cli_path(n: int, bench_url: str) -> None:
    """The same month through the commands (`import_entries`, then `draft_invoices`), each
    in its own process: both start-ups included."""
    env = {**os.environ, "DATABASE_URL": bench_url, "LOG_LEVEL": "WARNING"}
    python = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*python, "migrate", "-v0"], check=True, env=env)
    with tempfile.TemporaryDirectory(prefix="month_end_cli_") as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(firm_rules(40))
        subprocess.run(
            [*python, "import_rules", str(rules)], check=True, env=env, stdout=subprocess.DEVNULL
        )
        files = []
        for name, content in synthetic_exports(n, 40).items():
            files.append(Path(tmp) / name)
            files[-1].write_bytes(content)
        load = os.getloadavg()[0]
        rows = []
        for label, command in (
            ("import_entries", ["import_entries", *map(str, files)]),
            ("draft_invoices", ["draft_invoices", "--period", "2026-10"]),
            ("start-up only", ["draft_invoices", "--help"]),
        ):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([*python, *command], check=True, env=env, stdout=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rows.append((label, time.perf_counter() - started, cpu))
    both = rows[0][1] + rows[1][1]
    print(
        f"N = {n:,}, commands: import_entries + draft_invoices {both:.2f} s wall (load {load:.2f})"
    )
    for label, seconds, cpu in rows:
        print(f"  {label:<15}{seconds:>9.2f}{cpu:>8.2f}")
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
    parser.add_argument("--clients", type=int, default=40, help="clients (default 40)")
    parser.add_argument(
        "--paths",
        action="store_true",
        help="also the user path (upload, then the Draft button) and the commands' path",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="stages", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, clients=args.clients, path=args.path)
        return
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billables")
    bench_url = url.rsplit("/", 1)[0] + "/" + BENCH_DB
    results = Path(tempfile.mkdtemp(prefix="month_end_results_")) / "stages.jsonl"
    for n in args.sizes:
        for path in ["stages", "user"] if args.paths else ["stages"]:
            reset_database(url)
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    str(n),
                    "--clients",
                    str(args.clients),
                    "--path",
                    path,
                ],
                check=True,
                env={**os.environ, "BENCH_DATABASE_URL": bench_url, "BENCH_RESULTS": str(results)},
            )
        if args.paths:
            reset_database(url)
            run_cli_path(n, bench_url)
    reset_database(url)
    if results.exists():
        print_linearity(results)
        shutil.rmtree(results.parent)


if __name__ == "__main__":
    main()
