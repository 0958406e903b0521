"""Sync benchmark: N entries from the fake Harvest API (2,000 per page) into the database.

    .venv/bin/python benchmarks/sync.py                 # N = 50,000
    .venv/bin/python benchmarks/sync.py --entries 10000

Starts the local fake Harvest server (tests/fakes/harvest_server.py) in this process with N
entries of 20 people on 10 projects over the last 30 days, and runs one connection's first sync
(every entry new) and then a second, full re-read (every entry unchanged). Prints per run: wall
time, the time the fake spent answering (building and sending its JSON: not ours, subtracted),
entries per second, pages, and SQL queries per page. The announcement to billing is enqueued per
page (one queue row); classification runs later in the workers and is not part of this figure
(benchmarks/month_end.py measures it).

Runs on a fresh database (`billables_bench_sync` on the server of DATABASE_URL). Figures are
recorded in benchmarks/README.md. Nothing here asserts a time: it prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "billables_bench_sync"


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def run(entries: int) -> None:
    os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault(
        "BILLABLES_ENCRYPTION_KEYS", "ZGV2ZWxvcG1lbnQtb25seS1rZXktbm90LWZvci11c2U="
    )
    import django

    django.setup()
    import datetime as dt

    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from tests.fakes import harvest_server as fakes
    from timesheets import sync
    from timesheets.models import Client, Person, Project, SyncRun, TimeEntry, TrackerConnection
    from timesheets.sync.storing import PageWriter

    fake, server = fakes.start()
    started = time.perf_counter()
    fakes.populate(fake, entries=entries, days=30, people=20)
    print(f"fake Harvest with {entries:,} entries ready in {time.perf_counter() - started:.1f} s")
    for n in range(20):
        Person.objects.create(email=f"person{n}@example.com", name=f"Person{n} Example")
    for n in range(5):
        Client.objects.create(name=f"Client {n}")
    for n in range(10):
        Project.objects.create(
            client=Client.objects.get(name=f"Client {n % 5}"), code=f"P{n}", name=f"Project {n}"
        )
    conn = TrackerConnection(
        name="Bench Harvest",
        kind="harvest",
        account_id=fake.account_id,
        base_url=fake.url,
        sync_from=dt.date.today() - dt.timedelta(days=31),
    )
    sync.set_token(connection=conn, token=fake.token)
    conn.save()

    # Queries of each page (its mapping lookups, upsert, counters, announcement), counted
    # around the method that stores one page.
    counter = QueryCounter()
    per_page: list[int] = []
    store = PageWriter.store

    def counted_store(self, page, **kwargs):
        before = counter.count
        store(self, page, **kwargs)
        per_page.append(counter.count - before)

    PageWriter.store = counted_store
    print(
        f"  {'run':<22}{'wall s':>8}{'fake s':>8}{'ours s':>8}{'entries/s':>11}"
        f"{'pages':>7}{'queries':>9}  queries per page"
    )
    for label in ("first sync (all new)", "full re-read (same)"):
        if label.startswith("full"):
            TrackerConnection.objects.filter(pk=conn.pk).update(cursor=None)
        per_page.clear()
        counter.count = 0
        fake.busy_seconds = 0.0
        started = time.perf_counter()
        with connection.execute_wrapper(counter):
            result = sync.sync_connection(connection_id=conn.pk, trigger=SyncRun.Trigger.COMMAND)
        wall = time.perf_counter() - started
        ours = wall - fake.busy_seconds
        assert result.status == SyncRun.Status.SUCCEEDED, result.error_messages
        # e.g. "6 x 22, 13 x 2, 15 x 1": 22 pages of 6 queries, ...
        pages = ", ".join(
            f"{queries} x {count}" for queries, count in sorted(Counter(per_page).items())
        )
        print(
            f"  {label:<22}{wall:>8.2f}{fake.busy_seconds:>8.2f}{ours:>8.2f}"
            f"{result.fetched / ours:>11,.0f}{result.pages:>7}{counter.count:>9}  {pages}"
        )
        print(
            f"    created {result.created:,}, updated {result.updated:,}, "
            f"unchanged {result.unchanged:,}, deleted {result.deleted:,}"
        )
    assert TimeEntry.objects.count() == entries
    server.shutdown()


def reset_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    for sql in (f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run(args.entries)
        return
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billables")
    reset_database(url)
    try:
        subprocess.run(
            [sys.executable, __file__, "--one", "--entries", str(args.entries)],
            check=True,
            env={**os.environ, "BENCH_DATABASE_URL": url.rsplit("/", 1)[0] + "/" + BENCH_DB},
        )
    finally:
        reset_database(url)


if __name__ == "__main__":
    main()
