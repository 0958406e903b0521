import json

from django.core.checks import Tags
from django.core.management.base import BaseCommand

from invoices.exporting import export_period, period_lines_csv

from ._period import add_period_arguments, period_from_options


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Write a period's invoices as JSON (see docs/invoice-export.md), or their lines as CSV."

    def add_arguments(self, parser):
        add_period_arguments(parser)
        parser.add_argument("--format", choices=["json", "csv"], default="json")
        parser.add_argument("--include-void", action="store_true")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, **options):
        document = export_period(
            period=period_from_options(options), include_void=options["include_void"]
        )
        if options["format"] == "csv":
            text = period_lines_csv(document)
        else:
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")
