"""manage.py export_rules [FILE]

Writes the firm's whole billing configuration as a rules file, to FILE or to stdout. The text
is checked by the importer's own validation before it is written: configuration entered by
other means (the admin) that a rules file cannot hold is reported as a warning on stderr, so
it is found now rather than when the file is next imported.
"""

from pathlib import Path
from typing import Any

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoices.rulesfile import RulesExportError, RulesFileInvalid, export_rules, load_rules


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Export the firm's whole billing configuration as a rules file (YAML)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", type=Path, metavar="FILE")

    def handle(self, *args: Any, file: Path | None, **options: Any) -> None:
        try:
            text = export_rules()
        except RulesExportError as error:
            for problem in error.problems:
                self.stderr.write(problem)
            raise CommandError("nothing was exported") from None
        try:
            load_rules(text)
        except RulesFileInvalid as rejection:
            self.stderr.write("warning: the exported file would not import as it is:")
            for problem in rejection.errors:
                self.stderr.write(f"  {problem}")
        if file is None:
            self.stdout.write(text, ending="")
            return
        try:
            file.write_text(text, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"{file}: cannot write the file: {error.strerror}") from None
        self.stdout.write(f"wrote {file}")
