"""The audit trail: PostgreSQL triggers (django-pghistory) record every change to the money
tables, whoever makes it: the admin, a command, a bulk import (`bulk_create`,
`QuerySet.update()`, upserts) or raw SQL. Signal-based history would miss exactly the bulk
writes that imports and syncs use (reliability notes 3.5).

Each event row is a snapshot of the row after the change (before it, for a delete); "before"
of an update is the previous event of the same row, which the migration that installed the
triggers seeds with a `baseline` snapshot of every row that existed then. Who and where come
from `pghistory.middleware.HistoryMiddleware` (the logged-in user and the URL).

Every event model lives in this app, so tracking the time entries, people, projects and
clients of `timesheets` needs no migration there: the triggers are declared on proxies of those
models defined here, and pgtrigger installs them on each proxy's table, which is the model's.

Drafting replaces every line and entry link of a draft on each rebuild (one bulk DELETE, one
bulk INSERT), so those tables, like the entries, are recorded by statement-level triggers: one
INSERT ... SELECT from the statement's transition table, whatever the number of rows.

`InvoiceEvent` stays the domain log (approved, voided, corrected, pushed, with the reason);
these tables are the row-level record underneath it.
"""

from __future__ import annotations

import pghistory
import pgtrigger
from django.db import models
from pghistory.models import MiddlewareEvents

from invoices.models import (
    BillingCode,
    Cap,
    Category,
    Classification,
    ClassificationRule,
    ClientPolicy,
    EntryAdjustment,
    Firm,
    Invoice,
    InvoiceEntry,
    InvoiceLine,
    InvoicePush,
    ManualLine,
    Rate,
    RateMultiplier,
)
from timesheets.models import Client, Person, Project, TimeEntry

# A reviewer's decision is what the trail must show for classifications; the decision fields
# that every classification run rewrites in bulk would add a row per entry per run.
MANUAL_FIELDS = ["manual_category", "manual_billable", "manual_description"]


def _obj():
    # `related_name="history"`: `Invoice.events` is already the domain log.
    return pghistory.ObjForeignKey(related_name="history")


def _row_events():
    return (pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent())


CONFIGURATION_MODELS = [
    (Firm, "FirmHistory"),
    (Category, "CategoryHistory"),
    (ClassificationRule, "ClassificationRuleHistory"),
    (Rate, "RateHistory"),
    (ClientPolicy, "ClientPolicyHistory"),
    (BillingCode, "BillingCodeHistory"),
    (RateMultiplier, "RateMultiplierHistory"),
    (Cap, "CapHistory"),
    # A reviewer's write-downs and manual lines (billing semantics 10.4): who changed what.
    (EntryAdjustment, "EntryAdjustmentHistory"),
    (ManualLine, "ManualLineHistory"),
]

for _model, _name in CONFIGURATION_MODELS:
    pghistory.track(*_row_events(), obj_field=_obj(), model_name=_name, app_label="invoices")(
        _model
    )

# Named fields, not "all": a field another feature adds to these models then needs no
# migration here. Drafting rewrites `drafted_at` on every rebuild and the policy snapshot is
# large and kept on the invoice; leaving them out records a rebuild only when it changed
# something a reviewer cares about (totals, flags, status).
INVOICE_FIELDS = [
    "client",
    "project",
    "period_start",
    "period_end",
    "status",
    "number",
    "currency",
    "issue_date",
    "due_date",
    "subtotal",
    "adjustments",
    "discount",
    "total",
    "flags",
    "approved_at",
    "approved_by",
    "voided_at",
    "voided_by",
]
# The facts a bill rests on; bookkeeping such as `updated_at` (rewritten by every upsert,
# so an unchanged re-import writes no history) and sync metadata are left out.
TIME_ENTRY_FIELDS = [
    "source",
    "external_id",
    "person",
    "client",
    "project",
    "task",
    "date",
    "start_time",
    "duration_seconds",
    "notes",
    "tracker_billable",
    # The tracker's billing state holds an entry back or lets it bill (section 10.2).
    "tracker_invoiced",
    "tracker_approved",
    "content_hash",
    "locked",
    "pending_source_change",
    "import_batch",
    # From the tracker sync: a deletion at the source is a change the trail must show.
    "connection",
    "source_updated_at",
    "deleted_at",
]
pghistory.track(
    *_row_events(),
    fields=INVOICE_FIELDS,
    obj_field=_obj(),
    model_name="InvoiceHistory",
    app_label="invoices",
)(Invoice)

pghistory.track(
    pghistory.InsertEvent(
        condition=pgtrigger.Q(new__manual_category__isnull=False)
        | pgtrigger.Q(new__manual_billable__isnull=False)
        | ~pgtrigger.Q(new__manual_description="")
    ),
    pghistory.UpdateEvent(condition=pgtrigger.AnyChange(*MANUAL_FIELDS)),
    fields=["entry", *MANUAL_FIELDS, "manual_by", "manual_at", "category", "billable"],
    obj_field=_obj(),
    model_name="ClassificationHistory",
    app_label="invoices",
)(Classification)


class TrackedTimeEntry(TimeEntry):
    """`TimeEntry` as the audit trail sees it: same table, triggers declared in this app."""

    # Its own plain managers: whatever managers `TimeEntry` gains or loses, this proxy's
    # migration state stays the same (no migration in this app for a change in that one).
    objects = models.Manager()

    class Meta:
        proxy = True
        base_manager_name = "objects"
        verbose_name = "time entry"
        verbose_name_plural = "time entries"


pghistory.track(
    *_row_events(),
    fields=TIME_ENTRY_FIELDS,
    obj_field=_obj(),
    meta={"verbose_name": "time entry version", "verbose_name_plural": "time entry history"},
    # One trigger run per statement, not per row: an import upserts thousands of entries in
    # one statement, and the history rows are then written with one INSERT ... SELECT from
    # the statement's transition table (a row-level trigger doubled the import time).
    level=pgtrigger.Statement,
    model_name="TimeEntryHistory",
    app_label="invoices",
)(TrackedTimeEntry)

# Every field of a line and of an entry link: what a line bills and why, and which entry is on
# which invoice in which state. Named, so that a field added later is a decision here.
INVOICE_LINE_FIELDS = [
    "invoice",
    "position",
    "kind",
    "description",
    "category",
    "billing_code",
    "project",
    "person",
    "quantity",
    "unit_price",
    "amount",
    "first_date",
    "derivation",
]
INVOICE_ENTRY_FIELDS = [
    "invoice",
    "line",
    "entry",
    "state",
    "pending_reason",
    "is_live",
    "raw_seconds",
    "billed_seconds",
    "content_hash",
    "late_from",
]
# `status_checked_at` is left out: the status check rewrites it on every poll; what it found
# (`qbo_status`, `qbo_total`, `status`) is recorded when it changes.
INVOICE_PUSH_FIELDS = [
    "invoice",
    "generation",
    "request_id",
    "status",
    "attempts",
    "qbo_invoice_id",
    "sync_token",
    "doc_number",
    "qbo_total",
    "qbo_status",
    "last_error",
    "requested_by",
    "pushed_at",
]


def _unindexed_copy(model, to: str, *, null: bool = False):
    """An event table's copy of a foreign key, without the index pghistory gives each one.
    Every rebuild writes a draft's lines and links twice (deleted, inserted): at 100,000
    links, three fewer indexes halved the time of the delete's history (8.0 s -> 3.3 s).
    What the trail looks rows up by keeps its index: the row (`pgh_obj`) and the invoice."""
    return models.ForeignKey(
        to,
        null=null,
        blank=null,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
        related_query_name="+",
    )


UNINDEXED_COPIES = {
    InvoiceLine: {
        "category": _unindexed_copy(InvoiceLine, "invoices.category", null=True),
        "project": _unindexed_copy(InvoiceLine, "timesheets.project", null=True),
        "person": _unindexed_copy(InvoiceLine, "timesheets.person", null=True),
    },
    InvoiceEntry: {
        "line": _unindexed_copy(InvoiceEntry, "invoices.invoiceline", null=True),
        "entry": _unindexed_copy(InvoiceEntry, "timesheets.timeentry"),
    },
}

for _model, _fields, _name, _verbose in (
    (InvoiceLine, INVOICE_LINE_FIELDS, "InvoiceLineHistory", "invoice line"),
    (InvoiceEntry, INVOICE_ENTRY_FIELDS, "InvoiceEntryHistory", "invoice entry link"),
):
    pghistory.track(
        *_row_events(),
        fields=_fields,
        obj_field=_obj(),
        context_field=pghistory.ContextForeignKey(db_index=False),
        attrs=dict(UNINDEXED_COPIES[_model]),
        meta={
            "verbose_name": f"{_verbose} version",
            "verbose_name_plural": f"{_verbose} history",
        },
        # Per statement, as for time entries: a rebuild of a 100,000-entry draft deletes and
        # inserts 100,000 links in two statements, and each then writes its history in one.
        level=pgtrigger.Statement,
        model_name=_name,
        app_label="invoices",
    )(_model)

pghistory.track(
    *_row_events(),
    fields=INVOICE_PUSH_FIELDS,
    obj_field=_obj(),
    model_name="InvoicePushHistory",
    app_label="invoices",
)(InvoicePush)


class TrackedPerson(Person):
    """`Person` as the audit trail sees it (a person's role picks rates, section 5)."""

    objects = models.Manager()  # as on TrackedTimeEntry: this app's migration state only

    class Meta:
        proxy = True
        base_manager_name = "objects"
        verbose_name = "person"
        verbose_name_plural = "people"


class TrackedProject(Project):
    """`Project` as the audit trail sees it (its client, code and billing pick rates, caps and
    whether it bills at all)."""

    objects = models.Manager()

    class Meta:
        proxy = True
        base_manager_name = "objects"
        verbose_name = "project"
        verbose_name_plural = "projects"


class TrackedClient(Client):
    """`Client` as the audit trail sees it (its name is on every invoice)."""

    objects = models.Manager()

    class Meta:
        proxy = True
        base_manager_name = "objects"
        verbose_name = "client"
        verbose_name_plural = "clients"


# The fields that price or place time; bookkeeping such as `created_at` is left out, and a
# field another feature adds to these models is recorded once it is named here (no migration
# in this app for a change in that one).
DIRECTORY_MODELS = [
    (TrackedPerson, ["email", "name", "role"], "PersonHistory"),
    (TrackedProject, ["client", "code", "name", "billing"], "ProjectHistory"),
    (TrackedClient, ["name"], "ClientHistory"),
]
for _model, _fields, _name in DIRECTORY_MODELS:
    pghistory.track(
        *_row_events(),
        fields=_fields,
        obj_field=_obj(),
        meta={
            "verbose_name": f"{_model._meta.verbose_name} version",
            "verbose_name_plural": f"{_model._meta.verbose_name} history",
        },
        model_name=_name,
        app_label="invoices",
    )(_model)

# The tables a rebuild rewrites whole (and the entries an import writes by the thousand): the
# audit trail shows them when their table, or one invoice, is chosen, not by default.
HIGH_VOLUME_HISTORY = ["TimeEntryHistory", "InvoiceLineHistory", "InvoiceEntryHistory"]
# Event tables whose rows name an invoice: one invoice's whole record across them.
INVOICE_HISTORY = [
    "InvoiceHistory",
    "InvoiceLineHistory",
    "InvoiceEntryHistory",
    "InvoicePushHistory",
]

HISTORY_MODEL_NAMES = [name for _, name in CONFIGURATION_MODELS] + [
    "InvoiceHistory",
    "InvoiceLineHistory",
    "InvoiceEntryHistory",
    "InvoicePushHistory",
    "ClassificationHistory",
    "TimeEntryHistory",
    *(name for _, _, name in DIRECTORY_MODELS),
]


class AuditRecord(MiddlewareEvents):
    """One row of the audit trail across the tables above, with who (the request's user), where
    (the URL) and the change against the previous record of the same row; the admin's
    "Audit trail" page."""

    class Meta:
        proxy = True
        verbose_name = "audit record"
        verbose_name_plural = "audit trail"
