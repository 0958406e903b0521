"""Queue approved invoices for QuickBooks (the same service as the admin action).

manage.py push_invoices --period 2026-10          # every approved, unsent invoice of October
manage.py push_invoices --invoice 12 --invoice 13 # these (a failed one is retried)
manage.py push_invoices --period 2026-10 --now    # and send them here, one at a time
manage.py push_invoices --statuses                # read QuickBooks' status back now
"""

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError

from integrations.quickbooks import QuickBooksError
from invoices import quickbooks
from invoices.models import Invoice, InvoiceStatus

from ._period import add_period_arguments, period_from_options


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Queue approved invoices for QuickBooks; --now sends them in this process."

    def add_arguments(self, parser):
        add_period_arguments(parser)
        parser.add_argument(
            "--invoice", type=int, action="append", default=[], help="invoice id (repeatable)"
        )
        parser.add_argument(
            "--now", action="store_true", help="send here instead of waiting for the task cluster"
        )
        parser.add_argument(
            "--statuses",
            action="store_true",
            help="only read the pushed invoices' status back from QuickBooks",
        )

    def handle(self, *args, **options):
        if options["statuses"]:
            try:
                self.stdout.write(str(quickbooks.refresh_statuses()))
            except (QuickBooksError, quickbooks.NotConnected) as exc:
                raise CommandError(getattr(exc, "message", str(exc))) from exc
            return
        invoices = Invoice.objects.filter(status=InvoiceStatus.APPROVED).order_by("id")
        if options["invoice"]:
            invoices = invoices.filter(pk__in=options["invoice"])
        else:
            period = period_from_options(options)
            invoices = invoices.filter(
                period_start__gte=period.start, period_end__lte=period.end
            ).exclude(pushes__status__in=quickbooks.ACTIVE)
        queued = []
        for invoice in invoices:
            try:
                queued.append(quickbooks.request_push(invoice=invoice, user=None))
            except quickbooks.PushRefused as exc:
                self.stderr.write(f"{invoice.label}: {exc}")
        self.stdout.write(f"{len(queued)} invoice(s) queued for QuickBooks.")
        if options["now"]:
            for push in queued:
                done = quickbooks.push(push_id=push.pk)
                detail = done.doc_number if done.qbo_invoice_id else done.last_error
                self.stdout.write(f"{push.request_id}: {done.get_status_display()} {detail}")
