"""Language-model tier benchmark, against the local fake Anthropic API (tests/fakes).

    .venv/bin/python benchmarks/model_tier.py                  # both parts
    .venv/bin/python benchmarks/model_tier.py --part tiers     # 10,000 entries: tiers, tokens
    .venv/bin/python benchmarks/model_tier.py --part latency   # 500 entries through qcluster

Part "tiers": a firm with 40 clients approves September (2,000 entries; the model decides what
it can, reviewers the rest), then imports October (10,000 entries with realistic notes). Prints
how many October entries each tier decided; model requests, tokens and cost per 1,000 entries
that needed the model; the cache-hit share; and the same per 1,000 entries for the naive design
(one request per entry, no grouping of identical notes), measured on a sample of 1,000.

Part "latency": the fake answers after 2 s per request; `manage.py qcluster` runs with 4
workers; a 500-entry month of 10 clients goes from CSV import to invoice drafts (import,
rules and memory, the model tier in the cluster's workers, drafting). Prints the seconds.

Token counts are the fake's estimate (about 4 characters per token); the real Haiku 5.5
tokenizer counts more (api-notes 5.9), the ratios are what matter. Output tokens include the
fake's simulated thinking (Haiku 5.5 thinks by default and is billed for it; the amount is a
guess), and each request carries the model tier's known-answer items. Each part runs in its own
process on a fresh database (`billables_bench`). Nothing here asserts a time: it prints.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "billables_bench"

# What people type into a time tracker: a few terse notes used all the time, and templated
# notes with a varying part. Frequencies fall off roughly like a Zipf distribution.
TERSE = [
    "sync w/ client",
    "project work",
    "initial stakeholder meeting",
    "client call",
    "emails",
    "call w/ client re: scope",
    "weekly status call",
    "standup",
    "team meeting",
    "code review",
    "research",
    "planning",
    "misc",
    "internal sync",
    "travel to client site",
    "kickoff with client team",
    "documentation",
    "testing",
    "deployment",
    "admin",
    "same as yesterday",
    "follow-up",
    "prep for meeting",
    "bug fixes",
    "worked on ticket",
]
TEMPLATES = [
    "Bugfix: {component}",
    "Refactor {component}",
    "Implement {feature}",
    "Code review PR #{n}",
    "Wireframes for {screen}",
    "Mockups: {screen}",
    "Call w/ {person} re: {topic}",
    "Meeting w/ {person} re: {topic}",
    "Drafted {doc}",
    "Reviewed {doc}",
    "Research: {topic}",
    "Sprint {n} planning",
    "Estimate for {feature}",
    "Workshop: {topic}",
    "Demo of {feature} to client",
    "Fix {component} tests",
    "Deploy {component} to staging",
    "Stakeholder interview: {person}",
    "Updated {doc}",
    "{feature} - continued",
]
SLOTS = {
    "component": [
        "pagination",
        "auth middleware",
        "checkout",
        "search",
        "invoice export",
        "user settings",
        "cart",
        "reporting",
        "notifications",
        "API client",
        "order list",
        "login form",
        "CSV import",
        "webhooks",
        "permissions",
    ],
    "feature": [
        "SSO login",
        "bulk edit",
        "PDF export",
        "order history",
        "saved searches",
        "dark mode",
        "audit log",
        "rate limiting",
        "multi-currency",
        "refunds",
        "email digests",
        "role management",
    ],
    "screen": [
        "checkout",
        "dashboard",
        "onboarding",
        "product page",
        "settings",
        "cart",
        "search results",
        "account page",
        "order detail",
        "landing page",
    ],
    "person": [
        "GC",
        "CTO",
        "product owner",
        "Sarah",
        "ops lead",
        "marketing",
        "Tom",
        "finance team",
        "the board",
        "legal",
    ],
    "topic": [
        "scope change",
        "discovery schedule",
        "timeline",
        "budget",
        "data retention",
        "launch plan",
        "requirements",
        "SLA",
        "migration",
        "pricing",
        "roadmap",
        "security review",
    ],
    "doc": [
        "motion to compel",
        "SOW",
        "status report",
        "project plan",
        "deposition outline",
        "requirements doc",
        "release notes",
        "architecture memo",
        "test plan",
        "contract",
    ],
}
# Most entries carry a generic task; some the task that fits the note (as people pick it).
TASK_OF = {
    "development": "Development",
    "design": "Design",
    "client-meeting": "Meetings",
    "travel": "Travel",
    "project-mgmt": "Project Management",
}
PEOPLE = [
    ("Ana", "Pereira"),
    ("Ben", "Okafor"),
    ("Cleo", "Marsh"),
    ("Dara", "Quinn"),
    ("Eve", "Santos"),
    ("Finn", "Berg"),
    ("Gia", "Russo"),
    ("Hugo", "Laurent"),
]


def note(rng: random.Random) -> str:
    if rng.random() < 0.45:
        # Terse notes: the first few far more often than the rest.
        return TERSE[min(int(rng.paretovariate(1.2)) - 1, len(TERSE) - 1)]
    template = TEMPLATES[min(int(rng.paretovariate(1.0)) - 1, len(TEMPLATES) - 1)]
    return template.format(n=rng.randint(1, 60), **{k: rng.choice(v) for k, v in SLOTS.items()})


def rules(clients: int) -> str:
    """The Northwind configuration, two task rules ops staff add, and N synthetic clients."""
    base = (ROOT / "data" / "northwind" / "rules.yaml").read_text().rstrip("\n")
    base = base.replace(
        "rules:\n",
        "rules:\n- priority: 50\n  task: Development\n  category: development\n"
        "- priority: 50\n  task: Design\n  category: design\n",
        1,
    )
    extra = "".join(
        f"- name: Bench Client {i:03d}\n"
        f"  non_billable_categories: [internal-meeting, admin]\n"
        f"  projects:\n  - {{code: BC{i:03d}, name: Project {i:03d}, billing: hourly}}\n"
        for i in range(clients)
    )
    return base + "\n" + extra


def task_for(text: str, rng: random.Random) -> str:
    from tests.fakes.anthropic_server import keyword_category

    fitting = TASK_OF.get(keyword_category(text) or "")
    return fitting if fitting and rng.random() < 0.4 else rng.choice(["General", "General", ""])


def harvest_export(n: int, clients: int, month: str, seed: int) -> bytes:
    rng = random.Random(seed)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
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
    for _ in range(n):
        ci = rng.randrange(clients)
        first, last = rng.choice(PEOPLE)
        minutes = rng.choice([6, 12, 15, 30, 45, 60, 90, 120, 180])
        text = note(rng)
        w.writerow(
            [
                f"{month}-{rng.randint(1, 28):02d}",
                f"Bench Client {ci:03d}",
                f"Project {ci:03d}",
                f"BC{ci:03d}",
                task_for(text, rng),
                text,
                f"{minutes // 60}.{minutes % 60 * 100 // 60:02d}",
                "Yes",
                first,
                last,
            ]
        )
    return out.getvalue().encode()


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def configure_model(base_url: str, **extra) -> None:
    from django.conf import settings

    settings.ANTHROPIC_API_KEY = "bench"
    settings.ANTHROPIC_BASE_URL = base_url
    for name, value in extra.items():
        setattr(settings, name, value)


def tier_counts(start: str, end: str) -> dict[str, int]:
    from django.db.models import Count

    from invoices.models import Classification

    rows = (
        Classification.objects.filter(entry__date__gte=start, entry__date__lte=end)
        .values("tier", "needs_review")
        .annotate(n=Count("entry_id"))
        .order_by()
    )
    counts: dict[str, int] = {}
    for row in rows:
        key = "needs review" if row["needs_review"] else (row["tier"] or "undecided")
        counts[key] = counts.get(key, 0) + row["n"]
    return counts


def import_quietly(name: str, content: bytes) -> None:
    """Import without the post-import hook (classification is its own step here)."""
    from timesheets.importing import import_file
    from timesheets.signals import entries_imported

    receivers, entries_imported.receivers = entries_imported.receivers, []
    try:
        import_file(name=name, content=content)
    finally:
        entries_imported.receivers = receivers


def approve_september(clients: int) -> None:
    """September as reviewers left it: the model decided what it could, a reviewer the rest
    (with what the note says), and every invoice approved. Its notes are October's memory."""
    from django.contrib.auth.models import User

    from invoices.approval import approve_invoice
    from invoices.classification import classify_entries, entries_to_classify
    from invoices.drafting import Period, draft_invoices
    from invoices.model_tier import run_model_tier
    from invoices.models import Category, Classification
    from tests.fakes.anthropic_server import keyword_category

    import_quietly("september.csv", harvest_export(2_000, clients, "2026-09", seed=9))
    classify_entries(entries_to_classify())
    run_model_tier(trigger="benchmark-history")
    ids = dict(Category.objects.values_list("key", "id"))
    pending = Classification.objects.filter(needs_review=True, entry__date__lt="2026-10-01")
    by_category: dict[int, list[int]] = {}
    for entry_id, notes in pending.values_list("entry_id", "entry__notes"):
        key = keyword_category(notes) or "project-mgmt"
        by_category.setdefault(ids[key], []).append(entry_id)
    for category_id, entry_ids in by_category.items():
        Classification.objects.filter(entry_id__in=entry_ids).update(manual_category_id=category_id)
    classify_entries(entries_to_classify(start=None, end=None))
    user = User.objects.create_superuser("bench", password="x")
    for invoice in draft_invoices(period=Period.month("2026-09"), reclassify=False).invoices:
        approve_invoice(invoice=invoice, user=user)


def part_tiers() -> None:
    from tests.fakes.anthropic_server import FakeAnthropic, start

    fake, server = start(FakeAnthropic(api_key="bench"))
    configure_model(fake.base_url)
    from invoices.classification import classify_entries, entries_to_classify
    from invoices.model_tier import run_model_tier
    from invoices.models import Classification, ModelRun
    from invoices.rulesfile import import_rules

    clients = 40
    import_rules(rules(clients))
    started = time.perf_counter()
    approve_september(clients)
    print(
        f"September (2,000 entries) classified, reviewed and approved in "
        f"{time.perf_counter() - started:.1f} s"
    )

    import_quietly("october.csv", harvest_export(10_000, clients, "2026-10", seed=10))
    classify_entries(entries_to_classify(start=None, end=None))
    before = tier_counts("2026-10-01", "2026-10-31")
    fake.requests.clear()
    started = time.perf_counter()
    summary = run_model_tier(trigger="benchmark")
    seconds = time.perf_counter() - started
    after = tier_counts("2026-10-01", "2026-10-31")
    run = ModelRun.objects.get(pk=summary.run_id)

    print("\nOctober, 10,000 entries: who decided")
    print(f"  {'tier':<14}{'before model':>14}{'after model':>13}")
    for key in ["rule", "memory", "llm", "manual", "needs review"]:
        print(f"  {key:<14}{before.get(key, 0):>14,}{after.get(key, 0):>13,}")
    asked = run.entries
    prompt = run.input_tokens + run.cache_read_tokens + run.cache_write_tokens
    print(
        f"\nModel tier: {asked:,} entries needed the model ({summary.distinct_notes:,} distinct "
        f"notes, counted per client), {run.requests} requests, {seconds:.1f} s against the fake"
    )
    print(
        f"  cache-hit share (cache read / prompt tokens): {run.cache_read_tokens / prompt:.0%}"
        if prompt
        else "  no prompt tokens"
    )

    # The naive design on a sample: one request per entry, identical notes asked each time.
    sample = list(
        Classification.objects.filter(model_request__run=run)
        .order_by("entry_id")
        .values_list("entry_id", flat=True)[:1000]
    )
    Classification.objects.filter(entry_id__in=sample).update(
        model_category=None,
        model_description="",
        model_confidence=None,
        model_note="",
        model_request=None,
    )
    classify_entries(entries_to_classify(entry_ids=sample))
    naive_summary = run_model_tier(
        entry_ids=sample, batch_size=1, dedupe=False, trigger="benchmark-naive"
    )
    naive = ModelRun.objects.get(pk=naive_summary.run_id)
    naive_prompt = naive.input_tokens + naive.cache_read_tokens + naive.cache_write_tokens

    def per_k(value: float, entries: int) -> float:
        return value * 1000 / entries if entries else 0

    rows = [
        ("requests", per_k(run.requests, asked), per_k(naive.requests, naive.entries)),
        ("prompt tokens (all)", per_k(prompt, asked), per_k(naive_prompt, naive.entries)),
        (
            "  uncached input",
            per_k(run.input_tokens, asked),
            per_k(naive.input_tokens, naive.entries),
        ),
        (
            "  cache read",
            per_k(run.cache_read_tokens, asked),
            per_k(naive.cache_read_tokens, naive.entries),
        ),
        (
            "  cache write",
            per_k(run.cache_write_tokens, asked),
            per_k(naive.cache_write_tokens, naive.entries),
        ),
        (
            "output tokens",
            per_k(run.output_tokens, asked),
            per_k(naive.output_tokens, naive.entries),
        ),
        ("cost (USD)", per_k(run.cost_usd, asked), per_k(naive.cost_usd, naive.entries)),
    ]
    print(
        "\nPer 1,000 entries needing the model "
        f"(naive design measured on {naive.entries:,} of them):"
    )
    print(f"  {'':<22}{'this tier':>12}{'naive':>12}{'naive / tier':>14}")
    for label, ours, theirs in rows:
        ratio = f"{theirs / ours:.1f}x" if ours else "-"
        fmt = ",.4f" if label.startswith("cost") else ",.0f"
        print(f"  {label:<22}{ours:>12{fmt}}{theirs:>12{fmt}}{ratio:>14}")
    print(
        f"\nMonth total: {run.requests} requests, ${run.cost_usd} "
        f"({os.environ.get('CLASSIFIER_MODEL', 'claude-haiku-5-5')} prices)"
    )
    server.shutdown()


def part_latency() -> None:
    from django.conf import settings
    from django.db import connection
    from django_q.models import OrmQ, Task

    from invoices.drafting import Period, draft_invoices
    from invoices.models import ModelRun
    from invoices.rulesfile import import_rules
    from tests.fakes.anthropic_server import FakeAnthropic, start
    from timesheets.importing import import_file

    fake, server = start(FakeAnthropic(api_key="bench", delay_seconds=2.0))
    configure_model(fake.base_url)
    clients = 10
    import_rules(rules(clients))
    content = harvest_export(500, clients, "2026-10", seed=5)
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": fake.base_url,
        "Q_WORKERS": "4",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": settings_url(),
    }
    cluster = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # let the cluster start its workers
        connection.close()
        started = time.perf_counter()
        import_file(name="october.csv", content=content)  # classifies, then enqueues
        while OrmQ.objects.exists() or ModelRun.objects.filter(status="running").exists():
            time.sleep(0.1)
        model_done = time.perf_counter() - started
        summary = draft_invoices(period=Period.month("2026-10"), reclassify=False)
        seconds = time.perf_counter() - started
    finally:
        stop(cluster)
        server.shutdown()
    runs = ModelRun.objects.all()
    tasks = Task.objects.filter(group="model-tier")
    pending = sum(inv.entry_links.filter(state="pending").count() for inv in summary.invoices)
    print(
        f"500 entries, {clients} clients, fake answering after 2 s, qcluster with 4 workers "
        f"({settings.Q_CLUSTER['name']}):"
    )
    print(
        f"  {tasks.count()} model-tier tasks ({tasks.filter(success=True).count()} succeeded), "
        f"{sum(r.requests for r in runs)} requests, {sum(r.entries for r in runs)} entries "
        f"asked, {sum(r.decided for r in runs)} decided"
    )
    print(f"  import to model answers stored: {model_done:.1f} s")
    print(
        f"  import to drafts: {seconds:.1f} s ({len(summary.invoices)} drafts, "
        f"{pending} entries pending review)"
    )


def stop(process: subprocess.Popen) -> None:
    """Stop the cluster we started (its own process group), forcibly if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def settings_url() -> str:
    return os.environ["DATABASE_URL"]


def reset_database(url: str) -> None:
    base = url.rsplit("/", 1)[0]
    for sql in (f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["tiers", "latency", "both"], default="both")
    parser.add_argument("--one", choices=["tiers", "latency"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        setup_django(os.environ["BENCH_DATABASE_URL"])
        {"tiers": part_tiers, "latency": part_latency}[args.one]()
        return
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billables")
    bench_url = url.rsplit("/", 1)[0] + "/" + BENCH_DB
    parts = ["tiers", "latency"] if args.part == "both" else [args.part]
    for part in parts:
        reset_database(url)
        subprocess.run(
            [sys.executable, __file__, "--one", part],
            check=True,
            env={**os.environ, "BENCH_DATABASE_URL": bench_url},
        )
        print()
    reset_database(url)


if __name__ == "__main__":
    main()
