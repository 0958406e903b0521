"""The trigger-based audit trail sees changes made by bulk writes, including the sync's."""

import pytest
from django.apps import apps
from django.utils import timezone

from tests import billing_fixtures as make
from timesheets.models import TimeEntry

pytestmark = pytest.mark.django_db


def test_a_deletion_at_the_source_is_recorded_in_the_entry_history():
    acme = make.client("Acme")
    entry = make.entry(make.project(acme, "ACME"), make.person("Ana Pereira", "Partner"))
    gone = timezone.now()
    TimeEntry.all_objects.filter(pk=entry.pk).update(deleted_at=gone, source_updated_at=gone)

    history = apps.get_model("invoices", "TimeEntryHistory")
    versions = list(history.objects.filter(pgh_obj_id=entry.pk).order_by("pgh_id"))
    assert [v.pgh_label for v in versions] == ["insert", "update"]
    assert (versions[0].deleted_at, versions[1].deleted_at) == (None, gone)
    assert versions[1].source_updated_at == gone
