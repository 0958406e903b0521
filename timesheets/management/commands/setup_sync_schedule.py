"""`manage.py setup_sync_schedule`: create or update the hourly sync schedule. Idempotent.

One django-q2 schedule (`sync-time-entries`) runs `timesheets.tasks.sync_all_connections`,
which enqueues one task per connection due. Downtime does not cause a catch-up storm: the
cluster runs with `catch_up: False` (billing_site/settings.py), so after an outage the schedule
fires once and moves on; and each run covers every change since its connection's cursor, so a
missed hour is read by the next run.
"""

from typing import Any

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

SCHEDULE_NAME = "sync-time-entries"
TASK = "timesheets.tasks.sync_all_connections"


def ensure_schedule(*, minutes: int = 60) -> tuple[Schedule, bool]:
    """The one sync schedule, created or brought up to date: (schedule, created)."""
    if minutes == 60:
        timing: dict[str, Any] = {"schedule_type": Schedule.HOURLY, "minutes": None}
    else:
        timing = {"schedule_type": Schedule.MINUTES, "minutes": minutes}
    with transaction.atomic():
        # Schedule names are not unique in the database: keep the oldest, drop duplicates.
        existing = list(
            Schedule.objects.select_for_update().filter(name=SCHEDULE_NAME).order_by("id")
        )
        for duplicate in existing[1:]:
            duplicate.delete()
        schedule, created = Schedule.objects.update_or_create(
            name=SCHEDULE_NAME,
            defaults={"func": TASK, "args": None, "kwargs": None, "repeats": -1, **timing},
            # Only a new schedule starts now; an existing one keeps its next run.
            create_defaults={
                "func": TASK,
                "repeats": -1,
                "next_run": timezone.now(),
                **timing,
            },
        )
    return schedule, created


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Create or update the django-q2 schedule of the tracker sync (hourly by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--minutes", type=int, default=60, help="Interval in minutes (default 60)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        schedule, created = ensure_schedule(minutes=max(1, options["minutes"]))
        verb = "Created" if created else "Updated"
        every = schedule.get_schedule_type_display().lower()
        if schedule.schedule_type == Schedule.MINUTES:
            every = f"every {schedule.minutes} minutes"
        self.stdout.write(
            f"{verb} schedule {schedule.name!r}: {schedule.func} {every}, "
            f"next run {schedule.next_run:%Y-%m-%d %H:%M} UTC"
        )
