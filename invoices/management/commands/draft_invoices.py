from django.core.management.base import BaseCommand, CommandError

from invoices.drafting import DraftingError, draft_invoices
from timesheets.models import Client

from ._period import add_period_arguments, period_from_options


class Command(BaseCommand):
    help = "Draft (or rebuild) invoices for a period. Approved invoices are left as they are."

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
