from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"
    verbose_name = "Billing"

    def ready(self) -> None:
        from timesheets.signals import entries_imported

        entries_imported.connect(_entries_imported, dispatch_uid="invoices.entries_imported")


def _entries_imported(sender, *, entry_ids=(), frozen_entry_ids=(), **kwargs) -> None:
    from invoices.review import on_entries_imported

    on_entries_imported(entry_ids=entry_ids, frozen_entry_ids=frozen_entry_ids)
