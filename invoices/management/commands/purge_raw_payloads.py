"""Purge raw payloads older than a retention age, without breaking any invoice.

    manage.py purge_raw_payloads [--older-than-days 90] [--dry-run] [--held-entries]

The default age is RAW_PAYLOAD_RETENTION_DAYS (90). What is purged, and why it is safe:

- `TimeEntry.pending_source_change` (the tracker's version of an entry that changed at the
  source while it was on an approved invoice) on entries that are no longer locked, i.e.
  whose invoice was voided, and untouched for the retention age. The entry's own billed
  values are kept; the next import or sync that sees the source's version applies it as a
  normal change. On a locked entry (still on an approved invoice) it is the evidence behind
  the invoice's "source changed" flag and is never purged.
- the detail kept on import batches and sync runs (`SyncRun.error_messages` and `progress`:
  vendors' error texts) of finished runs; the counts stay.
- django-q2 task records (`django_q_task`: pickled arguments, results and tracebacks) that
  finished before the cutoff. The queue itself is never touched.
- with `--held-entries` only: tracker entries still waiting for a person or project mapping
  that were fetched before the cutoff (`HeldEntry`, the tracker's raw entry). Off by default:
  such an entry is time nobody billed yet; map it in the admin instead where it matters.

Never purged: entries, classifications, invoices and their lines, derivations and snapshots,
QuickBooks push records, and the audit trail (domain events and row history are the record of
what happened and have their own retention: export them with `export_client_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone


@dataclass(frozen=True)
class Payload:
    """A field holding a raw payload, emptied (NULL, or the field's default) on rows whose
    `age_field` is before the cutoff and that match `only`."""

    model: str  # app_label.ModelName; skipped when that model or one of the fields is missing
    field: str
    age_field: str
    only: Q
    label: str


PAYLOADS = [
    Payload(
        "timesheets.TimeEntry",
        "pending_source_change",
        "updated_at",
        Q(locked=False),
        "recorded source changes on entries no longer on an approved invoice",
    ),
    Payload("timesheets.ImportBatch", "detail", "imported_at", Q(), "import batch detail"),
    Payload(
        "timesheets.SyncRun",
        "error_messages",
        "started_at",
        ~Q(status="running"),
        "sync run error messages",
    ),
    Payload(
        "timesheets.SyncRun",
        "progress",
        "started_at",
        ~Q(status="running"),
        "sync run progress notes",
    ),
]


def _empty(field) -> Any:
    return None if field.null else field.get_default()


def _model_with(label: str, *fields: str):
    try:
        model = apps.get_model(label)
    except LookupError:
        return None
    names = {f.name for f in model._meta.concrete_fields}
    return model if set(fields) <= names else None


def purge(*, older_than: timedelta, dry_run: bool = False, held_entries: bool = False) -> dict:
    """Returns {what: rows purged (or that would be)}."""
    cutoff = timezone.now() - older_than
    counts: dict[str, int] = {}
    for payload in PAYLOADS:
        model = _model_with(payload.model, payload.field, payload.age_field)
        if model is None:
            continue
        empty = _empty(model._meta.get_field(payload.field))
        not_empty = (
            Q(**{f"{payload.field}__isnull": False})
            if empty is None
            else ~Q(**{payload.field: empty})
        )
        rows = model._base_manager.filter(
            payload.only, not_empty, **{f"{payload.age_field}__lt": cutoff}
        )
        with transaction.atomic():
            if dry_run:
                counts[payload.label] = rows.count()
            else:
                # update(): no auto_now bump, so a purged row does not look recently changed.
                counts[payload.label] = rows.update(**{payload.field: empty})

    held = _model_with("timesheets.HeldEntry", "fetched_at")
    if held is not None and held_entries:
        rows = held._base_manager.filter(fetched_at__lt=cutoff)
        counts["entries waiting for a mapping (deleted)"] = (
            rows.count() if dry_run else rows.delete()[0]
        )

    from django_q.models import Task

    tasks = Task.objects.filter(stopped__lt=cutoff)
    counts["django-q2 task records (deleted)"] = tasks.count() if dry_run else tasks.delete()[0]
    return counts


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Purge raw payloads older than a retention age (see the module doc for what)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="retention age in days (default: RAW_PAYLOAD_RETENTION_DAYS, 90)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count only; change nothing")
        parser.add_argument(
            "--held-entries",
            action="store_true",
            help="also delete tracker entries still waiting for a mapping past the age",
        )

    def handle(self, *args, **options):
        days = options["older_than_days"]
        if days is None:
            days = getattr(settings, "RAW_PAYLOAD_RETENTION_DAYS", 90)
        if days < 1:
            raise CommandError("--older-than-days must be at least 1")
        counts = purge(
            older_than=timedelta(days=days),
            dry_run=options["dry_run"],
            held_entries=options["held_entries"],
        )
        verb = "would purge" if options["dry_run"] else "purged"
        for what, count in counts.items():
            self.stdout.write(f"{verb} {count}: {what} older than {days} days")
