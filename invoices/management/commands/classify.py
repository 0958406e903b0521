from django.core.management.base import BaseCommand, CommandError

from invoices.classification import classify_entries, entries_to_classify
from timesheets.models import Client

from ._period import add_period_arguments, period_from_options


class Command(BaseCommand):
    help = "Classify entries with the manual, rules and memory tiers (billing semantics 2)."

    def add_arguments(self, parser):
        add_period_arguments(parser)
        parser.add_argument("--client", help="client name")
        parser.add_argument("--all", action="store_true", help="every entry, any date")

    def handle(self, *args, **options):
        start = end = None
        if not options["all"]:
            period = period_from_options(options)
            start, end = period.start, period.end
        client_ids = None
        if options["client"]:
            client = Client.objects.filter(name__iexact=options["client"]).first()
            if client is None:
                raise CommandError(f"unknown client {options['client']!r}")
            client_ids = [client.id]
        summary = classify_entries(entries_to_classify(client_ids=client_ids, start=start, end=end))
        self.stdout.write(self.style.SUCCESS(str(summary)))
