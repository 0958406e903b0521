from django.core.management.base import BaseCommand

from invoices.models.utbms import DATA_DIR, load_utbms_codes


class Command(BaseCommand):
    help = (
        "Load the UTBMS code sets (task, activity, expense codes) from invoices/data/utbms: "
        "adds missing codes and updates changed names; never deletes a code."
    )

    def handle(self, *args, **options):
        added, updated = load_utbms_codes()
        self.stdout.write(f"UTBMS codes from {DATA_DIR}: {added} added, {updated} updated")
