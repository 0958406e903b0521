"""`manage.py sync [--connection ID]`: sync tracker connections now, in this process.

Safe to run at any time, also while the scheduled sync runs: a connection whose sync is already
running is skipped (its advisory lock is taken), and a run that is stopped half-way is completed
by the next one with nothing lost or duplicated.
"""

from typing import Any

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser

from timesheets.models import SyncRun, TrackerConnection
from timesheets.sync import ConnectionNotSyncable, due_connections, sync_connection


def describe(run: SyncRun) -> str:
    text = (
        f"{run.connection.name}: {run.get_status_display().lower()}; {run.pages} pages, "
        f"{run.fetched} fetched, {run.created} created, {run.updated} updated, "
        f"{run.deleted} deleted, {run.unchanged} unchanged"
    )
    if run.frozen:
        text += f", {run.frozen} changed on approved invoices (kept as billed)"
    if run.held:
        text += f", {run.held} waiting for a person or project mapping"
    if run.running_skipped:
        text += f", {run.running_skipped} running timers skipped"
    if run.errors:
        text += f", {run.errors} errors"
    for message in run.error_messages[-5:]:
        text += f"\n  {message}"
    return text


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Sync time entries from the tracker connections (all that are due, or one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--connection",
            type=int,
            metavar="ID",
            help="Only this connection (also when it is deferred by a rate limit).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["connection"] is not None:
            if not TrackerConnection.objects.filter(pk=options["connection"]).exists():
                raise CommandError(f"no tracker connection with id {options['connection']}")
            ids = [options["connection"]]
        else:
            ids = list(due_connections().values_list("id", flat=True))
            if not ids:
                self.stdout.write("No connection is due.")
        failed = []
        for connection_id in ids:
            try:
                run = sync_connection(connection_id=connection_id, trigger=SyncRun.Trigger.COMMAND)
            except ConnectionNotSyncable as exc:
                self.stderr.write(str(exc))
                failed.append(connection_id)
                continue
            self.stdout.write(describe(run))
            if run.status in (SyncRun.Status.FAILED, SyncRun.Status.ABANDONED):
                failed.append(connection_id)
        if failed:
            raise CommandError(f"{len(failed)} of {len(ids)} connection(s) did not sync")
