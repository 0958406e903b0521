from collections import defaultdict
from fractions import Fraction

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError

from invoices.core.rounding import round_quantity
from invoices.drafting import DraftingError, draft_invoices
from invoices.unbilled import unbilled_by_client, unbilled_entries
from timesheets.models import Client

from ._period import add_period_arguments, period_from_options


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = (
        "Draft (or rebuild) invoices for a period. Approved invoices are left as they are. "
        "Then lists the unbilled time (billable entries on no live invoice, of any period) per "
        "client, each entry with its reason and age."
    )

    def add_arguments(self, parser):
        add_period_arguments(parser)
        parser.add_argument("--client", action="append", help="client name (repeatable)")

    def handle(self, *args, **options):
        period = period_from_options(options)
        client_ids = None
        if options["client"]:
            client_ids = []
            for name in options["client"]:
                client = Client.objects.filter(name__iexact=name).first()
                if client is None:
                    raise CommandError(f"unknown client {name!r}")
                client_ids.append(client.id)
        try:
            summary = draft_invoices(period=period, client_ids=client_ids)
        except DraftingError as exc:
            raise CommandError(str(exc)) from exc
        for invoice in summary.invoices:
            pending = invoice.entry_links.filter(state="pending").count()
            flags = f" [{', '.join(invoice.flags)}]" if invoice.flags else ""
            self.stdout.write(
                f"{invoice}: {invoice.total} {invoice.currency}"
                f"{f', {pending} pending' if pending else ''}{flags}"
            )
        self.stdout.write(self.style.SUCCESS(str(summary)))
        self.write_unbilled(client_ids)

    def write_unbilled(self, client_ids):
        """Billing semantics 10.1 and 10.2: nothing billable is on no invoice without being
        listed, here and on the month overview. Plain text, one entry a line."""
        entries = unbilled_entries(client_ids=client_ids)
        if not entries:
            self.stdout.write("Unbilled time: none")
            return
        by_client = defaultdict(list)
        for entry in entries:
            by_client[entry.client.name].append(entry)
        rows = unbilled_by_client(entries)
        total = round_quantity(Fraction(sum(row.seconds for row in rows), 3600))
        self.stdout.write(
            f"Unbilled time: {_count(len(entries))}, {total} h (billable entries on no live "
            "invoice, any period)"
        )
        for row in rows:
            ages = ", ".join(f"{bucket}: {n}" for bucket, n in row.by_age.items())
            reasons = ", ".join(f"{reason}: {n}" for reason, n in row.by_reason.items())
            self.stdout.write(
                f"{row.client}: {_count(row.entries)}, {row.hours} h, oldest "
                f"{row.oldest:%Y-%m-%d}; {ages}; {reasons}"
            )
            for entry in by_client[row.client]:
                hours = round_quantity(Fraction(entry.duration_seconds, 3600))
                self.stdout.write(
                    f"  {entry.date:%Y-%m-%d}  {hours} h  {entry.age_days} days  "
                    f"{entry.person.name}  {entry.unbilled_reason}  (entry {entry.pk})"
                )


def _count(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"
