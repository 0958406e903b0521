"""Create or update the recurring django-q2 schedules, by name: safe to run on every deploy.

A management command rather than a data migration, so schedules can be re-asserted (after someone
edited or deleted one in the admin) without touching migration history.
"""

from django.core.checks import Tags
from django.core.management.base import BaseCommand
from django.utils import timezone
from django_q.models import Schedule

SCHEDULES = [
    {
        "name": "quickbooks-status",
        "func": "invoices.tasks_quickbooks.refresh_statuses_task",
        "schedule_type": Schedule.HOURLY,
        "minutes": None,
        "help": "read pushed invoices' status back from QuickBooks (sent, paid, voided)",
    },
    {
        "name": "quickbooks-resume-stalled-pushes",
        "func": "invoices.tasks_quickbooks.resume_stalled_pushes_task",
        "schedule_type": Schedule.MINUTES,
        "minutes": 10,
        "help": "enqueue again pushes left queued or pushing (a killed worker, a lost task)",
    },
]


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Create or update the recurring background schedules (idempotent)."

    def handle(self, *args, **options):
        for spec in SCHEDULES:
            defaults = {
                "func": spec["func"],
                "schedule_type": spec["schedule_type"],
                "minutes": spec["minutes"],
                "repeats": -1,
            }
            schedule, created = Schedule.objects.update_or_create(
                name=spec["name"], defaults=defaults
            )
            if created or schedule.next_run is None:
                schedule.next_run = timezone.now()
                schedule.save(update_fields=["next_run"])
            verb = "created" if created else "up to date"
            self.stdout.write(f"{spec['name']}: {verb} ({spec['help']})")
