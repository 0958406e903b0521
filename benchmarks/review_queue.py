"""Review-queue benchmark: how fast one decision for a (client, note) group answers, and what
the page and the batch rebuild cost (issue 16: a decision under 300 ms for a group of 20).

    .venv/bin/python benchmarks/review_queue.py                  # 2,000 entries, 300 decided notes
    .venv/bin/python benchmarks/review_queue.py --entries 10000 --decided 500

Builds a synthetic month on a fresh database (`billables_bench_queue` on the server of
DATABASE_URL): one client with `--entries` October entries of which `--groups` notes (20
entries each) are pending, `--decided` notes already decided by a reviewer (memory, and the
pool similar memory searches), the rest decided by a rule; all drafted. Then, per group, it
times `decide_note` (the service the queue's form calls, in its own transaction, with the
reclassification and stale marks it makes), through Django's test client the queue page and
one decision POST, and at the end "Rebuild all stale drafts". Printed: wall and CPU seconds
(CPU of this process: PostgreSQL's own work shows in wall time only) and the load average
before and after, since the machine is shared. Nothing here asserts: it prints.
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
BENCH_DB = "billables_bench_queue"
GROUP_SIZE = 20
VERBS = ["sync", "call", "touch base", "review", "prep", "follow up", "catch up", "check in"]
TOPICS = ["budget", "roadmap", "invoice", "contract", "schedule", "scope", "launch", "hiring"]
# Pending notes unlike each other and the decided ones: each group waits for its own decision
# (similar notes would be decided by the first decision's memory).
PENDING_NOTES = [
    "quarterly forecast prep",
    "vendor audit walkthrough",
    "security questionnaire answers",
    "migration dry run",
    "board deck edits",
    "hiring panel debrief",
    "data export fix",
    "pricing page copy",
    "sso configuration",
    "tax filing reconciliation",
]


def build_month(*, entries: int, groups: int, decided: int):
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.utils import timezone

    from invoices.drafting import Period, draft_invoices
    from invoices.models import Category, Classification, ClassificationRule, ClientPolicy, Firm
    from timesheets.models import Client, Person, Project, TimeEntry
    from timesheets.notes import normalize_notes

    period = Period.month("2026-10")
    firm = Firm.load()
    firm.name, firm.default_rate = "Bench firm", Decimal("150.00")
    firm.save()
    dev = Category.objects.create(key="development", name="Development")
    meeting = Category.objects.create(key="client-meeting", name="Client meeting")
    ClassificationRule.objects.create(category=dev, task="Development")
    people = [
        Person.objects.create(email=f"p{i}@bench.example", name=name, role="Consultant")
        for i, name in enumerate(["Sam Lee", "Ana Pereira", "Ben Okafor", "Cleo Marsh"])
    ]
    client = Client.objects.create(name="Big Client")
    ClientPolicy.objects.create(client=client)
    project = Project.objects.create(client=client, code="BIG", name="Big project")
    now = timezone.now()
    counter = iter(range(10**9))

    def entry(notes, task):
        n = next(counter)
        return TimeEntry(
            source="csv",
            external_id=f"bench-{n}",
            person=people[n % len(people)],
            client=client,
            project=project,
            task=task,
            date=period.start + dt.timedelta(days=n % 31),
            duration_seconds=900 + (n % 13) * 300,
            notes=notes,
            normalized_notes=normalize_notes(notes),
            content_hash=f"h{n}",
            created_at=now,
        )

    decided_notes = [
        f"{VERBS[i % len(VERBS)]} w/ team {i} re {TOPICS[i // len(VERBS) % len(TOPICS)]} item{i}"
        for i in range(decided)
    ]
    pending_notes = PENDING_NOTES[:groups]
    rows = [entry(note, "Other") for note in decided_notes]
    rows += [entry(note, "Other") for note in pending_notes for _ in range(GROUP_SIZE)]
    rows += [entry(f"feature work {n % 50}", "Development") for n in range(entries - len(rows))]
    TimeEntry.objects.bulk_create(rows, batch_size=5000)
    user = User.objects.create_superuser("bench", "bench@example.com", "bench-password")
    decided_ids = list(
        TimeEntry.objects.filter(notes__in=decided_notes).values_list("id", flat=True)
    )
    Classification.objects.bulk_create(
        [
            Classification(entry_id=pk, manual_category=meeting, manual_by=user, manual_at=now)
            for pk in decided_ids
        ]
    )
    draft_invoices(period=period)
    return user, client, meeting, period, [normalize_notes(n) for n in pending_notes]


def clock():
    return time.perf_counter(), time.process_time()


def since(started) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - started[0], cpu - started[1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args) -> None:
    os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from invoices.review import decide_note, rebuild_stale_drafts, stale_drafts

    call_command("migrate", verbosity=0)
    started = clock()
    user, client, meeting, period, notes = build_month(
        entries=args.entries, groups=args.groups, decided=args.decided
    )
    print(
        f"Month built in {since(started)[0]:.1f} s: {args.entries:,} entries, {args.groups} "
        f"pending groups of {GROUP_SIZE}, {args.decided} decided notes. Load average: {load()}"
    )
    browser = Client(SERVER_NAME="localhost")
    browser.force_login(user)
    queue = reverse("admin:invoices_classification_queue") + "?month=2026-10"
    browser.get(queue)  # session and caches warm
    page = clock()
    browser.get(queue)
    page_wall, page_cpu = since(page)
    print(f"  queue page ({args.groups} groups): wall {page_wall:.3f} s, CPU {page_cpu:.3f} s")

    walls, cpus = [], []
    service_groups = notes[: max(1, len(notes) - 1)]
    for note in service_groups:
        started = clock()
        decision = decide_note(
            client=client, normalized_notes=[note], period=period, user=user, category=meeting
        )
        wall, cpu = since(started)
        walls.append(wall)
        cpus.append(cpu)
        assert len(decision.entry_ids) == GROUP_SIZE
    print(
        f"  decide_note, {len(walls)} groups of {GROUP_SIZE}: wall median "
        f"{statistics.median(walls):.3f} s (max {max(walls):.3f}), CPU median "
        f"{statistics.median(cpus):.3f} s (max {max(cpus):.3f})"
    )
    if len(notes) > 1:
        started = clock()
        response = browser.post(
            reverse("admin:invoices_classification_queue_decide"),
            {"month": "2026-10", "client": client.pk, "note": notes[-1], "category": meeting.pk},
        )
        wall, cpu = since(started)
        print(
            f"  one decision POST (HTTP {response.status_code}, group of {GROUP_SIZE}): "
            f"wall {wall:.3f} s, CPU {cpu:.3f} s"
        )
    stale = stale_drafts(period=period).count()
    started = clock()
    rebuild_stale_drafts(period=period, user=user)
    wall, cpu = since(started)
    print(f"  rebuild all stale drafts ({stale}): wall {wall:.3f} s, CPU {cpu:.3f} s")
    print(f"  load average after: {load()}")
    sys.stdout.flush()


def reset_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    for sql in (f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=2000, help="the client's entries")
    parser.add_argument(
        "--groups", type=int, default=6, help=f"pending groups of 20 (at most {len(PENDING_NOTES)})"
    )
    parser.add_argument("--decided", type=int, default=300, help="notes already decided")
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
