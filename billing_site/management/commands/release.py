"""The release step: run once per deploy, before the new web and worker processes start.

    manage.py release [--no-collectstatic]

1. `check --deploy` (reports warnings; stops the release only on errors, such as a missing or
   public SECRET_KEY with DEBUG off, billables.E004);
2. `migrate`, under a PostgreSQL advisory lock, so two machines releasing at the same moment
   take turns instead of racing through the same migrations;
3. `collectstatic` (skipped in the container image, which collected at build time);
4. the recurring django-q2 schedules (`setup_schedules`: QuickBooks; `setup_sync_schedule`:
   the hourly tracker sync), each idempotent, when installed.

Everything here is safe to run again: a release that stopped half way is finished by the next.
"""

from __future__ import annotations

from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand
from django.db import connection

# Any fixed number, the same for every machine: pg_advisory_lock(RELEASE_LOCK_ID).
RELEASE_LOCK_ID = 7_020_260_001
SCHEDULE_COMMANDS = ("setup_schedules", "setup_sync_schedule")


class Command(BaseCommand):
    help = "Deploy-time step: checks, migrations (one machine at a time), static files, schedules."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-collectstatic",
            action="store_true",
            help="skip collectstatic (the container image has its files already)",
        )

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        call_command("check", deploy=True, verbosity=verbosity)
        with connection.cursor() as cursor:
            # A session lock: held across migrate's own transactions, released below (or
            # when this process's connection ends, whatever happens).
            cursor.execute("SELECT pg_advisory_lock(%s)", [RELEASE_LOCK_ID])
        try:
            call_command("migrate", interactive=False, verbosity=verbosity)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RELEASE_LOCK_ID])
        if not options["no_collectstatic"]:
            call_command("collectstatic", interactive=False, verbosity=verbosity)
        installed = get_commands()
        for name in SCHEDULE_COMMANDS:
            if name in installed:
                call_command(name, verbosity=verbosity)
        self.stdout.write("release done")
