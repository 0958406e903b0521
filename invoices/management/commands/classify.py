from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError

from invoices.classification import classify_entries, entries_to_classify
from invoices.model_tier import ModelTierError, run_model_tier, run_model_tier_batch_api
from timesheets.models import Client

from ._period import add_period_arguments, period_from_options


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = (
        "Classify entries with the manual, rules and memory tiers (billing semantics 2); with "
        "--model or --batch-api, then ask the language model about what they left undecided."
    )

    def add_arguments(self, parser):
        add_period_arguments(parser)
        parser.add_argument("--client", help="client name")
        parser.add_argument("--all", action="store_true", help="every entry, any date")
        tier = parser.add_mutually_exclusive_group()
        tier.add_argument(
            "--model",
            action="store_true",
            help="then run the language-model tier now (Messages API, in this process)",
        )
        tier.add_argument(
            "--batch-api",
            action="store_true",
            help="then run the language-model tier through the Message Batches API (half "
            "price; polls until the batch ends; safe to interrupt and run again)",
        )

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
        if not (options["model"] or options["batch_api"]):
            return
        try:
            if options["batch_api"]:
                model = run_model_tier_batch_api(
                    client_ids=client_ids, start=start, end=end, on_poll=self._polled
                )
            else:
                model = run_model_tier(
                    client_ids=client_ids, start=start, end=end, trigger="command"
                )
        except ModelTierError as exc:
            raise CommandError(str(exc)) from exc
        style = self.style.WARNING if model.skipped or model.unavailable else self.style.SUCCESS
        self.stdout.write(style(str(model)))

    def _polled(self, status) -> None:
        self.stdout.write(
            f"batch {status.id}: {status.processing_status} ({status.processing} processing, "
            f"{status.succeeded} succeeded, {status.errored} errored, {status.expired} expired)"
        )
