"""The structure the code relies on but no single file states (issue 15).

The pure core (`invoices.core`) imports no Django, so it spells out the values the models store
(placement states, line kinds, flags, tiers) on its own; these tests keep the two in step.
Each app has one error base, caught once at the edge; every error class of the app derives
from it. No database: only classes are read.
"""

import importlib
import inspect
import pkgutil

import pytest
from django.apps import apps

import invoices
import invoices.models
import timesheets
from invoices.core.classify import Tier
from invoices.core.pricing import MANUAL_KINDS, InvoiceFlag, LineKind, PlacementState
from invoices.errors import BillingError
from invoices.models import Classification, Flag, InvoiceEntry, InvoiceLine, ManualLine
from timesheets.errors import TimesheetError


def values(choices) -> set[str]:
    return {str(value) for value in choices.values}


def test_placement_states_are_the_stored_link_states():
    assert {str(s) for s in PlacementState} == values(InvoiceEntry.State)


def test_line_kinds_are_the_stored_line_kinds():
    assert {str(k) for k in LineKind} == values(InvoiceLine.Kind)


def test_manual_kinds_are_the_manual_line_kinds():
    assert {str(k) for k in MANUAL_KINDS} == values(ManualLine.Kind)
    # A manual line becomes an invoice line of the same kind.
    assert values(ManualLine.Kind) <= values(InvoiceLine.Kind)


def test_pricing_flags_are_stored_flags():
    # The models know more flags (stale, source changed, QuickBooks mismatch), raised outside
    # pricing; every flag pricing raises must be one of them.
    assert {str(f) for f in InvoiceFlag} <= values(Flag)


def test_tiers_are_the_stored_tiers():
    assert {str(t) for t in Tier} == values(Classification.Tier)


def test_every_model_of_the_app_is_importable_from_invoices_models():
    """The models are a package split by concern; `from invoices.models import X` must keep
    working for each of them (the history models pghistory generates are set there too; the
    proxies the audit trail declares live in invoices.history)."""
    models = [
        model
        for model in apps.get_app_config("invoices").get_models()
        if model.__module__.startswith("invoices.models")
    ]
    assert len(models) > 20
    for model in models:
        assert getattr(invoices.models, model.__name__) is model


def _exception_classes(package):
    """Every exception class defined in the package's modules (migrations left out)."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


# Errors that never leave their module: the rules-file YAML reader's depth guard is a YAML
# error by design (PyYAML reports it with the file position).
INTERNAL_ERRORS = {"invoices.rulesfile.loading._TooDeep"}


@pytest.mark.parametrize(
    ("package", "base"), [(invoices, BillingError), (timesheets, TimesheetError)]
)
def test_every_error_of_a_layer_has_the_layers_base(package, base):
    errors = [
        cls
        for cls in _exception_classes(package)
        if f"{cls.__module__}.{cls.__qualname__}" not in INTERNAL_ERRORS
    ]
    assert errors
    assert [cls for cls in errors if not issubclass(cls, base)] == []
