"""Sync benchmark: tracker APIs (local fakes, each in its own process) into the database.

    .venv/bin/python benchmarks/sync.py                       # both parts below
    .venv/bin/python benchmarks/sync.py --entries 10000 --month 0

1. Harvest alone: N entries (default 50,000; 2,000 per page) of 20 people on 10 projects over
   the last 30 days, one connection's first sync (every entry new), then a full re-read (every
   entry unchanged). The fake answers from its own process, so its JSON building is not on our
   CPU; the time it spent answering is reported by it and subtracted ("ours").
2. A month end: M entries (default 25,000) spread over Harvest, Clockify and Toggl, every
   request answered after 300 ms (a distant API), each vendor at its published limits (Harvest
   100 requests per 15 s, Clockify 50 per second, Toggl's Free plan 30 per hour and its largest
   report page), synced one connection after another, then classified and drafted: the time
   from sync start to drafts ready.

Runs on a fresh database (`billables_bench_sync`, or BENCH_DB, on the server of
DATABASE_URL). Figures are recorded in benchmarks/README.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DB", "billables_bench_sync")
NOTES = ["Drafted the motion", "Client call re: scope", "Code review", "Sync w/ client", ""]
PEOPLE, PROJECTS, CLIENTS, DAYS = 20, 10, 5, 30


# --- the fakes, each in its own process -------------------------------------------------------


def _populate(kind: str, fake, entries: int) -> dict:
    """The same firm in each tracker's terms; returns what a connection needs."""
    today = dt.date.today()
    if kind == "harvest":
        from tests.fakes import harvest_server

        harvest_server.populate(fake, entries=entries, days=DAYS, people=PEOPLE)
        return {"account_id": fake.account_id, "token": fake.token, "base_url": fake.url}
    if kind == "clockify":
        from tests.fakes.clockify_server import hex_id

        for n in range(PEOPLE):
            fake.add_user(hex_id(0xA00 + n), f"Person{n} Example", f"person{n}@example.com")
        for n in range(PROJECTS):
            fake.add_project(hex_id(0xB00 + n), f"Project {n}", f"Client {n % CLIENTS}")
        for n in range(entries):
            day = today - dt.timedelta(days=n % DAYS)
            fake.add_entry(
                user_id=hex_id(0xA00 + n % PEOPLE),
                project_id=hex_id(0xB00 + n % PROJECTS),
                start=dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC) + dt.timedelta(seconds=n),
                seconds=900 * (n % 16 + 1),
                description=NOTES[n % len(NOTES)] + (f" #{n}" if n % 7 == 0 else ""),
                task=("Dev", "Meetings", "Research")[n % 3],
            )
        fake.rate_limit = (50, 1.0)  # paid plans: 50 requests per second
        return {
            "account_id": fake.workspace_id,
            "token": fake.api_key,
            "base_url": fake.core_url,
            "reports_url": fake.reports_url,
        }
    for n in range(PEOPLE):
        fake.add_user(5000 + n, f"Person{n} Example", f"person{n}@example.com")
    for n in range(PROJECTS):
        fake.add_project(6000 + n, f"Project {n}", f"Client {n % CLIENTS}")
    for n in range(entries):
        day = today - dt.timedelta(days=n % DAYS)
        fake.add_entry(
            user_id=5000 + n % PEOPLE,
            project_id=6000 + n % PROJECTS,
            start=dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC) + dt.timedelta(seconds=n),
            seconds=900 * (n % 16 + 1),
            description=NOTES[n % len(NOTES)] + (f" #{n}" if n % 7 == 0 else ""),
        )
    fake.hourly_quota = 30  # the Free plan, the tightest published quota
    return {
        "account_id": str(fake.workspace_id),
        "token": fake.token,
        "base_url": fake.api_url,
        "reports_url": fake.reports_url,
    }


def _serve(kind: str, entries: int, latency: float, pipe) -> None:
    """The child process: one fake, populated, answering after `latency` seconds; answers
    "busy" (seconds spent answering since the last "reset") until "stop"."""
    from tests.fakes import clockify_server, harvest_server, serving, toggl_server

    module = {"harvest": harvest_server, "clockify": clockify_server, "toggl": toggl_server}[kind]
    fake, server = module.start()
    if latency:
        send = serving.send_json

        def slow_send(*args, **kwargs):
            time.sleep(latency)
            return send(*args, **kwargs)

        serving.send_json = slow_send
    started = time.perf_counter()
    info = _populate(kind, fake, entries)
    info["ready_seconds"] = time.perf_counter() - started
    pipe.send(info)
    while True:
        command = pipe.recv()
        if command == "busy":
            pipe.send(getattr(fake, "busy_seconds", 0.0))
        elif command == "reset":
            fake.busy_seconds = 0.0
            fake.requests.clear()
        elif command == "stop":
            server.shutdown()
            return


class Fake:
    def __init__(self, kind: str, entries: int, latency: float = 0.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(kind, entries, latency, child))
        self.process.start()
        self.info = self.pipe.recv()

    def ask(self, command: str):
        self.pipe.send(command)
        return self.pipe.recv() if command == "busy" else None

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(timeout=30)


# --- our side ---------------------------------------------------------------------------------


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def _setup_django() -> None:
    os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault(
        "BILLABLES_ENCRYPTION_KEYS", "ZGV2ZWxvcG1lbnQtb25seS1rZXktbm90LWZvci11c2U="
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _firm() -> None:
    from timesheets.models import Client, Person, Project

    for n in range(PEOPLE):
        Person.objects.create(email=f"person{n}@example.com", name=f"Person{n} Example")
    for n in range(CLIENTS):
        Client.objects.create(name=f"Client {n}")
    for n in range(PROJECTS):
        Project.objects.create(
            client=Client.objects.get(name=f"Client {n % CLIENTS}"),
            code=f"P{n}",
            name=f"Project {n}",
        )


def _connect(kind: str, info: dict):
    from timesheets import sync
    from timesheets.models import TrackerConnection

    conn = TrackerConnection(
        name=f"Bench {kind}",
        kind=kind,
        account_id=info["account_id"],
        base_url=info["base_url"],
        reports_url=info.get("reports_url", ""),
        sync_from=dt.date.today() - dt.timedelta(days=DAYS + 1),
    )
    sync.set_token(connection=conn, token=info["token"])
    conn.save()
    return conn


def harvest_alone(entries: int) -> None:
    from django.db import connection

    from timesheets import sync
    from timesheets.models import SyncRun, TimeEntry, TrackerConnection
    from timesheets.sync.storing import PageWriter

    fake = Fake("harvest", entries)
    print(
        f"Harvest alone: fake with {entries:,} entries ready in its own process in "
        f"{fake.info['ready_seconds']:.1f} s"
    )
    _firm()
    conn = _connect("harvest", fake.info)
    counter = QueryCounter()
    per_page: list[int] = []
    store = PageWriter.store

    def counted_store(self, page, **kwargs):
        before = counter.count
        store(self, page, **kwargs)
        per_page.append(counter.count - before)

    PageWriter.store = counted_store
    print(
        f"  {'run':<22}{'wall s':>8}{'fake s':>8}{'ours s':>8}{'CPU s':>7}{'entries/s':>11}"
        f"{'pages':>7}{'queries':>9}{'load':>6}  queries per page"
    )
    try:
        for label in ("first sync (all new)", "full re-read (same)"):
            if label.startswith("full"):
                TrackerConnection.objects.filter(pk=conn.pk).update(cursor=None)
            per_page.clear()
            counter.count = 0
            fake.ask("reset")
            load = os.getloadavg()[0]
            started, cpu = time.perf_counter(), time.process_time()
            with connection.execute_wrapper(counter):
                result = sync.sync_connection(
                    connection_id=conn.pk, trigger=SyncRun.Trigger.COMMAND
                )
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            busy = fake.ask("busy")
            ours = wall - busy
            assert result.status == SyncRun.Status.SUCCEEDED, result.error_messages
            pages = ", ".join(f"{q} x {n}" for q, n in sorted(Counter(per_page).items()))
            print(
                f"  {label:<22}{wall:>8.2f}{busy:>8.2f}{ours:>8.2f}{cpu:>7.2f}"
                f"{result.fetched / ours:>11,.0f}{result.pages:>7}{counter.count:>9}"
                f"{load:>6.2f}  {pages}"
            )
            print(
                f"    created {result.created:,}, updated {result.updated:,}, "
                f"unchanged {result.unchanged:,}, deleted {result.deleted:,}"
            )
        assert TimeEntry.objects.count() == entries
    finally:
        PageWriter.store = store
        fake.stop()


def month_end(entries: int, latency: float) -> None:
    from invoices.classification import classify_entries, entries_to_classify
    from invoices.drafting import Period, draft_invoices
    from invoices.rulesfile import import_rules
    from timesheets import sync
    from timesheets.models import SyncRun, TimeEntry

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from month_end import firm_rules

    share = {"harvest": entries // 3, "clockify": entries // 3}
    share["toggl"] = entries - sum(share.values())
    fakes = {kind: Fake(kind, n, latency) for kind, n in share.items()}
    try:
        import_rules(firm_rules(0))
        _firm()
        connections = {kind: _connect(kind, fake.info) for kind, fake in fakes.items()}
        print(
            f"Month end: {entries:,} entries over Harvest, Clockify and Toggl, "
            f"{latency * 1000:.0f} ms per request, at each vendor's published limits"
        )
        print(f"  {'stage':<24}{'wall s':>8}{'CPU s':>7}{'pages':>7}{'entries':>9}{'load':>6}")
        started = time.perf_counter()
        for kind, conn in connections.items():
            load = os.getloadavg()[0]
            begun, cpu = time.perf_counter(), time.process_time()
            result = sync.sync_connection(connection_id=conn.pk, trigger=SyncRun.Trigger.COMMAND)
            wall, cpu = time.perf_counter() - begun, time.process_time() - cpu
            assert result.status == SyncRun.Status.SUCCEEDED, (kind, result.error_messages)
            print(
                f"  {'sync ' + kind:<24}{wall:>8.2f}{cpu:>7.2f}{result.pages:>7}"
                f"{result.fetched:>9,}{load:>6.2f}"
            )
        stored = TimeEntry.objects.count()
        today = dt.date.today()
        months = {today.strftime("%Y-%m"), (today - dt.timedelta(days=DAYS)).strftime("%Y-%m")}
        load = os.getloadavg()[0]
        begun, cpu = time.perf_counter(), time.process_time()
        classify_entries(entries_to_classify())
        drafts = sum(
            len(draft_invoices(period=Period.month(m), reclassify=False).invoices)
            for m in sorted(months)
        )
        wall, cpu = time.perf_counter() - begun, time.process_time() - cpu
        print(f"  {'classify and draft':<24}{wall:>8.2f}{cpu:>7.2f}{'':>7}{stored:>9,}{load:>6.2f}")
        total = time.perf_counter() - started
        print(f"  sync start to {drafts} drafts: {total:.1f} s")
        assert stored == entries, f"{stored:,} of {entries:,} entries stored"
    finally:
        for fake in fakes.values():
            fake.stop()


def run(entries: int, month: int, latency: float) -> None:
    _setup_django()
    if entries:
        harvest_alone(entries)
    if month:
        if entries:
            from timesheets.models import TimeEntry, TrackerConnection

            TimeEntry.all_objects.all().delete()
            TrackerConnection.objects.all().delete()
            from timesheets.models import Client, Person, Project

            Project.objects.all().delete()
            Client.objects.all().delete()
            Person.objects.all().delete()
        month_end(month, latency)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of our process {peak:.0f} MB")


def reset_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    for sql in (f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50_000, help="Harvest alone (0: skip)")
    parser.add_argument("--month", type=int, default=25_000, help="three trackers (0: skip)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run(args.entries, args.month, args.latency)
        return
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billables")
    reset_database(url)
    try:
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--entries",
                str(args.entries),
                "--month",
                str(args.month),
                "--latency",
                str(args.latency),
            ],
            check=True,
            env={**os.environ, "BENCH_DATABASE_URL": url.rsplit("/", 1)[0] + "/" + BENCH_DB},
        )
    finally:
        reset_database(url)


if __name__ == "__main__":
    main()
