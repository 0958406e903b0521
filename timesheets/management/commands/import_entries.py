"""manage.py import_entries FILE [FILE ...] [--date-order dmy|mdy] [--internal-time import|skip]
[--create-missing]

Each file (CSV or XLSX) is imported on its own, so one bad file does not hold back the others;
the command fails (status 1) when any file was rejected, after trying them all.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from timesheets.importing import (
    DATE_ORDERS,
    INTERNAL_TIME_CHOICES,
    DateOrder,
    ImportRejected,
    check_file_size,
    import_file,
)


class Command(BaseCommand):
    help = "Import Harvest, Clockify or Toggl Track exports, CSV or XLSX (all-or-nothing per file)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
        parser.add_argument(
            "--date-order",
            choices=DATE_ORDERS,
            default=None,
            help="How to read slash, dotted or dashed dates the file cannot settle itself "
            "(default: sniffed from the file; month-first when every date is ambiguous, "
            "day-first when they are all dotted).",
        )
        parser.add_argument(
            "--internal-time",
            choices=INTERNAL_TIME_CHOICES,
            default=None,
            help="Rows without a client: import them as internal, non-billable time, or skip "
            "them (default: the setting IMPORT_INTERNAL_TIME).",
        )
        parser.add_argument(
            "--create-missing",
            action="store_true",
            help="Create the clients, projects and people (by email) that a file names and the "
            "firm does not know, instead of rejecting their rows; the summary lists them.",
        )

    def handle(
        self,
        *args: Any,
        files: list[Path],
        date_order: DateOrder | None,
        internal_time: str | None,
        create_missing: bool = False,
        **options: Any,
    ) -> None:
        rejected = 0
        for path in files:
            try:
                # By its size first: an oversized file is refused unread.
                check_file_size(name=path.name, size=path.stat().st_size)
                stream = path.open("rb")
            except OSError as error:
                rejected += 1
                self.stderr.write(f"{path.name}: cannot read the file: {error.strerror}")
                continue
            except ImportRejected as rejection:
                rejected += 1
                self.stderr.write(rejection.report())
                continue
            try:
                # Streamed: the file is read in chunks, never whole.
                with stream:
                    result = import_file(
                        name=path.name,
                        stream=stream,
                        date_order=date_order,
                        internal_time=internal_time,
                        create_missing=create_missing,
                    )
            except ImportRejected as rejection:
                rejected += 1
                self.stderr.write(rejection.report())
                continue
            self.stdout.write(f"{path.name}: {result.summary()}")
        if rejected:
            raise CommandError(f"{rejected} of {len(files)} files rejected; nothing of them stored")
