"""`manage.py check_connections [--live]`: is every configured service ready for go-live?

One line per connection on stdout, `<connection>: ok: <what was proved>` or
`<connection>: FAILED: <what is wrong and what to do>`; exit status 1 when any failed. Without
`--live` nothing leaves this machine (settings, options, tokens readable and not expired);
with `--live` each connection makes one cheap authenticated request (Harvest `/users/me`,
Clockify `/user`, Toggl `/me`, QuickBooks CompanyInfo). Each tracker connection and the
QuickBooks connection keeps its last result and time for the admin.

Which services are checked is the `CONNECTION_CHECKS` setting (dotted paths of functions
taking `live` and returning `integrations.checks.CheckResult`s), so this command, in the
timesheets app, runs the invoices app's QuickBooks check without importing it.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from integrations.checks import CheckResult


class Command(BaseCommand):
    help = "Check every configured tracker and QuickBooks connection (--live: one real call each)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--live",
            action="store_true",
            help="Also make one cheap authenticated request to each service.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        results: list[CheckResult] = []
        for path in settings.CONNECTION_CHECKS:
            results.extend(import_string(path)(live=options["live"]))
        if not results:
            self.stdout.write("No connection is configured.")
        for result in results:
            self.stdout.write(result.line())
        failed = [r for r in results if not r.ok]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(results)} connections failed the check", returncode=1
            )
