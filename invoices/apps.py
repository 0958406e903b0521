from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"
    verbose_name = "Billing"

    def ready(self) -> None:
        # The audit trail's event models (history) and the database's guards on the money
        # tables (guards) register their models and triggers on import. They import the
        # models, so importing them here, once the models are loaded, rather than from the
        # bottom of models.py keeps the dependency one way (history/guards -> models).
        from invoices import guards, history  # noqa: F401
        from timesheets.signals import entries_imported

        entries_imported.connect(_entries_imported, dispatch_uid="invoices.entries_imported")


def _entries_imported(sender, *, entry_ids=(), frozen_entry_ids=(), **kwargs) -> None:
    from invoices.review import on_entries_imported

    on_entries_imported(entry_ids=entry_ids, frozen_entry_ids=frozen_entry_ids)
