from django.core.management.base import BaseCommand, CommandError

from invoices.ledes import LedesRefused, build_ledes, presend_checks
from invoices.models import Invoice


class Command(BaseCommand):
    help = (
        "Write an approved invoice as a LEDES 1998B file (docs/ledes.md): to standard output, "
        "or to the file -o names. Pre-send warnings (block billing, vague narratives) go to "
        "standard error; an invoice that cannot give a valid file is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("number", help="the invoice number, e.g. INV-2026-0001")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, **options):
        invoice = Invoice.objects.filter(number=options["number"]).first()
        if invoice is None:
            raise CommandError(
                f"no invoice is numbered {options['number']!r} (drafts have no number yet)"
            )
        try:
            text = build_ledes(invoice=invoice)
        except LedesRefused as refused:
            raise CommandError(str(refused)) from None
        for finding in presend_checks(invoice=invoice):
            self.stderr.write(f"warning: {finding}")
        if options["output"]:
            with open(options["output"], "w", encoding="ascii", newline="") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")
