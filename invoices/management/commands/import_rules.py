"""manage.py import_rules FILE [--dry-run] [--prune]

Applies a rules file (the firm's whole billing configuration) all or nothing, writing only the
rows that changed. On success it prints, per kind of row, how many were created, updated, left
unchanged and deleted, and names the rows the file does not list (kept, or deleted with
--prune); on failure it prints every problem, one per line with its path in the file, to stderr
and exits with status 1 having changed nothing.

With --dry-run it also lists each open draft whose total would change (old -> new) and each
entry whose category would change (`invoices.rule_preview.preview_rules_file`: the real import,
re-classification and redrafting, rolled back).
"""

from pathlib import Path
from typing import Any

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser

from invoices.rule_preview import preview_rules_file
from invoices.rulesfile import RulesFileInvalid, import_rules


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Import a rules file (YAML): the firm's whole billing configuration, all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, metavar="FILE")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Do what saving would (apply the file, re-classify, redraft every open draft) "
            "inside a transaction, report which open invoices' totals and which entries' "
            "categories would change, then roll everything back.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Delete the categories, rules, rates, billing codes, rate multipliers and caps "
            "(firm-wide, or of a client the file lists) that the file does not list. Without "
            "it they are kept and named in the report.",
        )

    def handle(self, *args: Any, file: Path, dry_run: bool, prune: bool, **options: Any) -> None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise CommandError(f"{file}: cannot read the file: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file}: not UTF-8 text; save the file as UTF-8") from None
        try:
            if dry_run:
                lines = preview_rules_file(text=text, prune=prune).lines()
            else:
                lines = import_rules(text, prune=prune).lines()
        except RulesFileInvalid as rejection:
            for error in rejection.errors:
                self.stderr.write(str(error))
            count = len(rejection.errors)
            raise CommandError(
                f"{file}: {count} error{'s' if count != 1 else ''}; nothing was changed"
            ) from None
        for line in lines:
            self.stdout.write(line)
