"""What the database itself guarantees about invoices, whatever path writes to it: the admin, a
service, `QuerySet.update()`, `bulk_create` or raw SQL (billing semantics section 8; the ledger
habit of django-hordak, whose legs are guarded by a trigger).

Frozen invoices (approved or void):
- their lines and entry links cannot be inserted, changed or deleted; the one change a link of
  an approved invoice may take is `is_live` true -> false, which voiding makes;
- their amounts, dates, number, client, period and approval cannot change; the status moves only
  approved -> void; they cannot be deleted. Flags (source changed, QuickBooks mismatch) may be
  added, and voiding sets `voided_at` / `voided_by`.
- an entry locked on an approved invoice keeps its content: the source's version waits in
  `pending_source_change` until a void applies it (`timesheets.source_changes`).

Stale marks, in the same transaction as the change that makes a draft stale:
- an entry that is inserted, edited at the source, deleted at the source, or whose
  classification changes marks "stale" every draft it is on, the client's draft of its period,
  and (for late time, section 10.1) the client's later drafts when its own period is approved;
- an entry on an approved invoice whose source version is recorded flags that invoice
  "source changed after approval".
- a change to what prices a draft (a rate, the client's policy, a cap, a multiplier, a billing
  code, the firm's default rate) marks the affected clients' drafts stale.
- a reviewer's adjustment (billing semantics 10.4) marks its drafts stale: an entry's write-down
  or write-up marks the entry's drafts (as an entry change does), a manual line the client's
  drafts of its period. A locked entry's adjustment and an approved invoice's manual lines
  cannot change.
Each mark writes an `InvoiceEvent` beside it. Approval refuses a stale draft, and re-checks each
entry's seconds and content hash under lock (`invoices.approval`).

The triggers run once per statement over its transition tables, so a bulk import of 100,000
entries costs a few joins, not 100,000 trigger calls. `MARK_STALE_FUNCTION` is installed by
migration 0008 and called by the entry and classification triggers.
"""

from __future__ import annotations

import pgtrigger

from invoices.history import TrackedTimeEntry
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    Classification,
    ClientPolicy,
    EntryAdjustment,
    Firm,
    Invoice,
    InvoiceEntry,
    InvoiceLine,
    ManualLine,
    Rate,
    RateMultiplier,
    TaxCode,
    TaxOverride,
)

FROZEN_ERROR = "check_violation"  # SQLSTATE 23514: Django raises IntegrityError

MARK_STALE_FUNCTION = """
CREATE OR REPLACE FUNCTION invoices_mark_drafts_stale(entry_ids bigint[], reason text)
RETURNS void LANGUAGE sql AS $$
    WITH changed AS (
        SELECT DISTINCT id FROM unnest(entry_ids) AS ids(id)
    ), affected AS (
        SELECT link.invoice_id AS id
          FROM invoices_invoiceentry link JOIN changed ON changed.id = link.entry_id
         WHERE link.is_live
        UNION
        SELECT draft.id
          FROM changed
          JOIN timesheets_timeentry entry ON entry.id = changed.id
          JOIN invoices_invoice draft
            ON draft.client_id = entry.client_id AND draft.status = 'draft'
         WHERE entry.date BETWEEN draft.period_start AND draft.period_end
            OR (draft.period_start > entry.date AND EXISTS (
                    SELECT 1 FROM invoices_invoice approved
                     WHERE approved.client_id = entry.client_id
                       AND approved.status = 'approved'
                       AND entry.date BETWEEN approved.period_start AND approved.period_end))
    ), flagged AS (
        UPDATE invoices_invoice invoice
           SET flags = array_append(invoice.flags, 'stale')
          FROM affected
         WHERE invoice.id = affected.id
           AND invoice.status = 'draft'
           AND NOT ('stale' = ANY(invoice.flags))
        RETURNING invoice.id
    )
    INSERT INTO invoices_invoiceevent (invoice_id, action, actor_id, at, detail)
    SELECT id, 'flagged stale', NULL, now(), jsonb_build_object('reason', reason)
      FROM flagged;
$$;
"""
DROP_MARK_STALE_FUNCTION = "DROP FUNCTION IF EXISTS invoices_mark_drafts_stale(bigint[], text);"

# What a bill rests on: a change to any of these makes the entry's draft stale.
ENTRY_BILLING_COLUMNS = (
    "duration_seconds",
    "content_hash",
    "deleted_at",
    "client_id",
    "project_id",
    "person_id",
    "date",
    "tracker_billable",
    "tracker_invoiced",
    "tracker_approved",
)
CLASSIFICATION_DECISION_COLUMNS = (
    "category_id",
    "description",
    "billable",
    "billing_code",
    "needs_review",
    "review_reason",
    "tier",
    "rule_id",
    "confidence",
    "hold_released_at",
)
INVOICE_FROZEN_COLUMNS = (
    "client_id",
    "project_id",
    "period_start",
    "period_end",
    "currency",
    "issue_date",
    "due_date",
    "subtotal",
    "adjustments",
    "discount",
    "total",
    "number",
    "approved_at",
    "approved_by_id",
    "policy_snapshot",
    "drafted_at",
)
LINK_COLUMNS = (
    "invoice_id",
    "line_id",
    "entry_id",
    "state",
    "pending_reason",
    "raw_seconds",
    "billed_seconds",
    "content_hash",
    "late_from",
)


def _row(alias: str, columns: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in columns) + ")"


def _distinct(columns: tuple[str, ...]) -> str:
    return f"{_row('n', columns)} IS DISTINCT FROM {_row('o', columns)}"


def _refuse(message: str, *args: str) -> str:
    params = "".join(f", {arg}" for arg in args)
    return f"RAISE EXCEPTION '{message}'{params} USING ERRCODE = '{FROZEN_ERROR}';"


def _refuse_if_frozen(table: str, what: str) -> str:
    """PL/pgSQL: refuse the statement when a row of transition table `table` belongs to a
    frozen invoice."""
    return f"""
        SELECT invoice.number, invoice.status INTO frozen FROM {table} changed_row
          JOIN invoices_invoice invoice ON invoice.id = changed_row.invoice_id
         WHERE invoice.status <> 'draft' LIMIT 1;
        IF FOUND THEN
            {_refuse(f"invoice % is %: its {what} cannot change", "frozen.number", "frozen.status")}
        END IF;
    """


def _insert_and_delete_guards(prefix: str, what: str) -> list[pgtrigger.Trigger]:
    """Rows of a frozen invoice are never inserted or deleted."""
    return [
        pgtrigger.Trigger(
            name=f"{prefix}_frozen_insert",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Insert,
            referencing=pgtrigger.Referencing(new="new_rows"),
            declare=[("frozen", "RECORD")],
            func=_refuse_if_frozen("new_rows", what) + "RETURN NULL;",
        ),
        pgtrigger.Trigger(
            name=f"{prefix}_frozen_delete",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Delete,
            referencing=pgtrigger.Referencing(old="old_rows"),
            declare=[("frozen", "RECORD")],
            func=_refuse_if_frozen("old_rows", what) + "RETURN NULL;",
        ),
    ]


REFUSE_LINK = _refuse("invoice % is %: its entries cannot change", "frozen.number", "frozen.status")
REFUSE_STATUS = _refuse(
    "invoice % is %: it cannot become %", "OLD.number", "OLD.status", "NEW.status"
)
REFUSE_INVOICE = _refuse(
    "invoice % is %: its amounts, dates and number cannot change", "OLD.number", "OLD.status"
)
REFUSE_ENTRY = _refuse(
    "time entry % (%) is on an approved invoice: its content cannot change; the source "
    "version waits in pending_source_change until the invoice is voided",
    "frozen.id",
    "frozen.external_id",
)
INVOICE_FROZEN_CHANGED = (
    f"{_row('NEW', INVOICE_FROZEN_COLUMNS)} IS DISTINCT FROM {_row('OLD', INVOICE_FROZEN_COLUMNS)}"
)

LINE_COLUMNS = (
    "invoice_id",
    "position",
    "kind",
    "description",
    "category_id",
    "billing_code",
    "project_id",
    "person_id",
    "quantity",
    "unit_price",
    "amount",
    "first_date",
    "derivation",
)

pgtrigger.register(
    *_insert_and_delete_guards("line", "lines"),
    pgtrigger.Trigger(
        name="line_frozen_update",
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
        declare=[("frozen", "RECORD")],
        func=_refuse_if_frozen("old_rows", "lines")
        + _refuse_if_frozen("new_rows", "lines")
        + "RETURN NULL;",
    ),
)(InvoiceLine)

pgtrigger.register(
    *_insert_and_delete_guards("link", "entries"),
    # The one change a frozen invoice's link takes: voiding sets is_live false.
    pgtrigger.Trigger(
        name="link_frozen_update",
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
        declare=[("frozen", "RECORD")],
        func=f"""
            SELECT invoice.number, invoice.status INTO frozen
              FROM new_rows n JOIN old_rows o ON o.id = n.id
              JOIN invoices_invoice invoice ON invoice.id IN (n.invoice_id, o.invoice_id)
             WHERE invoice.status <> 'draft'
               AND ({_distinct(LINK_COLUMNS)} OR (n.is_live AND NOT o.is_live))
             LIMIT 1;
            IF FOUND THEN
                {REFUSE_LINK}
            END IF;
            RETURN NULL;
        """,
    ),
)(InvoiceEntry)

pgtrigger.register(
    pgtrigger.Trigger(
        name="invoice_frozen_update",
        level=pgtrigger.Row,
        when=pgtrigger.Before,
        operation=pgtrigger.Update,
        condition=pgtrigger.Q(old__status__in=["approved", "void"]),
        func=f"""
            IF NOT (NEW.status = OLD.status OR (OLD.status = 'approved' AND NEW.status = 'void'))
            THEN
                {REFUSE_STATUS}
            END IF;
            IF {INVOICE_FROZEN_CHANGED}
               OR (OLD.status = 'void' AND (NEW.voided_at, NEW.voided_by_id)
                   IS DISTINCT FROM (OLD.voided_at, OLD.voided_by_id))
            THEN
                {REFUSE_INVOICE}
            END IF;
            RETURN NEW;
        """,
    ),
    pgtrigger.Trigger(
        name="invoice_frozen_delete",
        level=pgtrigger.Row,
        when=pgtrigger.Before,
        operation=pgtrigger.Delete,
        condition=pgtrigger.Q(old__status__in=["approved", "void"]),
        func=_refuse("invoice % is %: it cannot be deleted", "OLD.number", "OLD.status")
        + "RETURN OLD;",
    ),
)(Invoice)

pgtrigger.register(
    pgtrigger.Trigger(
        name="entry_change_marks",
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
        declare=[("frozen", "RECORD")],
        func=f"""
            -- A locked entry keeps what its approved invoice billed.
            SELECT n.id, n.external_id INTO frozen
              FROM new_rows n JOIN old_rows o ON o.id = n.id
             WHERE o.locked AND n.locked AND {_distinct(ENTRY_BILLING_COLUMNS)}
             LIMIT 1;
            IF FOUND THEN
                {REFUSE_ENTRY}
            END IF;
            PERFORM invoices_mark_drafts_stale(
                ARRAY(SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
                       WHERE {_distinct(ENTRY_BILLING_COLUMNS)}),
                'an entry changed');
            WITH recorded AS (
                SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
                 WHERE n.locked AND n.pending_source_change IS NOT NULL
                   AND n.pending_source_change IS DISTINCT FROM o.pending_source_change
            ), flagged AS (
                UPDATE invoices_invoice invoice
                   SET flags = array_append(invoice.flags, 'source_changed')
                 WHERE invoice.status = 'approved'
                   AND NOT ('source_changed' = ANY(invoice.flags))
                   AND invoice.id IN (
                       SELECT link.invoice_id FROM invoices_invoiceentry link
                         JOIN recorded ON recorded.id = link.entry_id
                        WHERE link.is_live)
                RETURNING invoice.id
            )
            INSERT INTO invoices_invoiceevent (invoice_id, action, actor_id, at, detail)
            SELECT id, 'flagged source_changed', NULL, now(), '{{}}'::jsonb FROM flagged;
            RETURN NULL;
        """,
    ),
    pgtrigger.Trigger(
        name="entry_insert_marks",
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        referencing=pgtrigger.Referencing(new="new_rows"),
        func="""
            PERFORM invoices_mark_drafts_stale(ARRAY(SELECT id FROM new_rows), 'a new entry');
            RETURN NULL;
        """,
    ),
)(TrackedTimeEntry)

pgtrigger.register(
    pgtrigger.Trigger(
        name="classification_change_marks",
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
        func=f"""
            PERFORM invoices_mark_drafts_stale(
                ARRAY(SELECT n.entry_id FROM new_rows n JOIN old_rows o ON o.entry_id = n.entry_id
                       WHERE {_distinct(CLASSIFICATION_DECISION_COLUMNS)}),
                'a classification changed');
            RETURN NULL;
        """,
    ),
    pgtrigger.Trigger(
        name="classification_insert_marks",
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        referencing=pgtrigger.Referencing(new="new_rows"),
        func="""
            PERFORM invoices_mark_drafts_stale(
                ARRAY(SELECT entry_id FROM new_rows), 'an entry was classified');
            RETURN NULL;
        """,
    ),
)(Classification)


# --- Configuration that prices drafts: a change marks the affected clients' drafts stale --------

MARK_CLIENT_DRAFTS_STALE_FUNCTION = """
CREATE OR REPLACE FUNCTION invoices_mark_client_drafts_stale(client_ids bigint[], reason text)
RETURNS void LANGUAGE sql AS $$
    -- A NULL among client_ids stands for a firm-wide row: every client's drafts.
    WITH flagged AS (
        UPDATE invoices_invoice invoice
           SET flags = array_append(invoice.flags, 'stale')
         WHERE invoice.status = 'draft'
           AND NOT ('stale' = ANY(invoice.flags))
           AND (invoice.client_id = ANY(client_ids) OR array_position(client_ids, NULL) IS NOT NULL)
        RETURNING invoice.id
    )
    INSERT INTO invoices_invoiceevent (invoice_id, action, actor_id, at, detail)
    SELECT id, 'flagged stale', NULL, now(), jsonb_build_object('reason', reason)
      FROM flagged;
$$;
"""
DROP_MARK_CLIENT_DRAFTS_STALE_FUNCTION = (
    "DROP FUNCTION IF EXISTS invoices_mark_client_drafts_stale(bigint[], text);"
)

# The client a configuration row prices, as SQL over a transition-table row `r`.
RATE_CLIENT = (
    "COALESCE(r.client_id, (SELECT project.client_id FROM timesheets_project project "
    "WHERE project.id = r.project_id))"
)


def _configuration_marks(
    prefix: str, what: str, client_sql: str, pk: str = "id"
) -> list[pgtrigger.Trigger]:
    def mark(selects: str) -> str:
        return f"""
            PERFORM invoices_mark_client_drafts_stale(ARRAY({selects}), '{what} changed');
            RETURN NULL;
        """

    # An update marks only rows that changed (a form saved as it was changes nothing), with
    # the client before and after (a row moved to another client changes both).
    changed = (
        f"FROM new_rows n JOIN old_rows o ON o.{pk} = n.{pk} "
        "WHERE ROW(n.*) IS DISTINCT FROM ROW(o.*)"
    )
    updated = (
        f"SELECT {client_sql.replace('r.', 'n.')} {changed} "
        f"UNION ALL SELECT {client_sql.replace('r.', 'o.')} {changed}"
    )

    return [
        pgtrigger.Trigger(
            name=f"{prefix}_insert_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Insert,
            referencing=pgtrigger.Referencing(new="new_rows"),
            func=mark(f"SELECT {client_sql} FROM new_rows r"),
        ),
        pgtrigger.Trigger(
            name=f"{prefix}_update_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Update,
            referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
            func=mark(updated),
        ),
        pgtrigger.Trigger(
            name=f"{prefix}_delete_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Delete,
            referencing=pgtrigger.Referencing(old="old_rows"),
            func=mark(f"SELECT {client_sql} FROM old_rows r"),
        ),
    ]


pgtrigger.register(*_configuration_marks("rate", "a rate", RATE_CLIENT))(Rate)
pgtrigger.register(
    *_configuration_marks("policy", "the client policy", "r.client_id", pk="client_id")
)(ClientPolicy)
pgtrigger.register(*_configuration_marks("cap", "a cap", "r.client_id"))(Cap)
pgtrigger.register(*_configuration_marks("multiplier", "a rate multiplier", "r.client_id"))(
    RateMultiplier
)
pgtrigger.register(*_configuration_marks("code", "a billing code", "r.client_id"))(BillingCode)
# A category's name, billable flag, billing and UTBMS codes reach every client's lines, so a
# change marks every draft (a NULL client is firm-wide).
pgtrigger.register(*_configuration_marks("category", "a category", "NULL::bigint"))(Category)
# The firm's default rate (level 9) prices every client without a closer rate.
pgtrigger.register(
    pgtrigger.Trigger(
        name="firm_rate_marks",
        level=pgtrigger.Row,
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        condition=pgtrigger.AnyChange("default_rate", "currency"),
        func="""
            PERFORM invoices_mark_client_drafts_stale(ARRAY[NULL::bigint], 'the firm rate changed');
            RETURN NULL;
        """,
    )
)(Firm)
# Billing semantics 12: a tax code, an override or per line / per invoice taxes any client's
# lines, so every draft is marked (a NULL client is firm-wide); a client's own code is on its
# policy, marked above.
pgtrigger.register(*_configuration_marks("tax_code", "a tax code", "NULL::bigint"))(TaxCode)
pgtrigger.register(*_configuration_marks("tax_override", "a tax override", "NULL::bigint"))(
    TaxOverride
)
pgtrigger.register(
    pgtrigger.Trigger(
        name="firm_tax_marks",
        level=pgtrigger.Row,
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        condition=pgtrigger.AnyChange("tax_calculation"),
        func="""
            PERFORM invoices_mark_client_drafts_stale(ARRAY[NULL::bigint], 'tax rounding changed');
            RETURN NULL;
        """,
    )
)(Firm)


# --- A reviewer's adjustments (section 10.4): stale marks, and what approval froze ----------------

ADJUSTMENT_COLUMNS = ("entry_id", "billed_seconds", "source_seconds", "reason", "made_by_id")
# Everything a manual line bills and shows; not `invoice_id`, which approval sets (marking the
# client's other drafts stale for it would make them unapprovable for nothing), nor `made_at`.
MANUAL_LINE_COLUMNS = (
    "client_id",
    "project_id",
    "period_start",
    "period_end",
    "kind",
    "description",
    "quantity",
    "unit_price",
    "category_id",
    "billing_code",
    "reason",
    "made_by_id",
)
REFUSE_LOCKED_ADJUSTMENT = _refuse(
    "time entry % (%) is on an approved invoice: its billed hours cannot be adjusted; void the "
    "invoice first",
    "frozen.id",
    "frozen.external_id",
)
REFUSE_BILLED_MANUAL_LINE = _refuse(
    "manual line % is billed on invoice %, which is approved: it cannot change; void the "
    "invoice first",
    "frozen.id",
    "frozen.number",
)


def _adjustment_marks() -> list[pgtrigger.Trigger]:
    def func(rows: str) -> str:
        return f"""
            SELECT entry.id, entry.external_id INTO frozen
              FROM ({rows}) changed JOIN timesheets_timeentry entry ON entry.id = changed.entry_id
             WHERE entry.locked LIMIT 1;
            IF FOUND THEN
                {REFUSE_LOCKED_ADJUSTMENT}
            END IF;
            PERFORM invoices_mark_drafts_stale(
                ARRAY(SELECT entry_id FROM ({rows}) changed), 'an entry''s billed hours changed');
            RETURN NULL;
        """

    changed = (
        "FROM new_rows n JOIN old_rows o ON o.entry_id = n.entry_id "
        f"WHERE {_distinct(ADJUSTMENT_COLUMNS)}"
    )
    return [
        pgtrigger.Trigger(
            name="adjustment_insert_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Insert,
            referencing=pgtrigger.Referencing(new="new_rows"),
            declare=[("frozen", "RECORD")],
            func=func("SELECT entry_id FROM new_rows"),
        ),
        pgtrigger.Trigger(
            name="adjustment_update_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Update,
            referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
            declare=[("frozen", "RECORD")],
            func=func(f"SELECT n.entry_id {changed} UNION SELECT o.entry_id {changed}"),
        ),
        pgtrigger.Trigger(
            name="adjustment_delete_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Delete,
            referencing=pgtrigger.Referencing(old="old_rows"),
            declare=[("frozen", "RECORD")],
            func=func("SELECT entry_id FROM old_rows"),
        ),
    ]


def _manual_line_marks() -> list[pgtrigger.Trigger]:
    def refuse_billed(join: str = "", condition: str = "TRUE") -> str:
        return f"""
            SELECT o.id, invoice.number INTO frozen
              FROM old_rows o JOIN invoices_invoice invoice ON invoice.id = o.invoice_id {join}
             WHERE invoice.status = 'approved' AND ({condition}) LIMIT 1;
            IF FOUND THEN
                {REFUSE_BILLED_MANUAL_LINE}
            END IF;
        """

    def mark(rows: str) -> str:
        # The drafts a manual line goes on: its client's, of a period holding the line's.
        return f"""
            WITH changed AS ({rows}), flagged AS (
                UPDATE invoices_invoice invoice
                   SET flags = array_append(invoice.flags, 'stale')
                 WHERE invoice.status = 'draft'
                   AND NOT ('stale' = ANY(invoice.flags))
                   AND EXISTS (
                       SELECT 1 FROM changed
                        WHERE changed.client_id = invoice.client_id
                          AND changed.period_start >= invoice.period_start
                          AND changed.period_end <= invoice.period_end)
                RETURNING invoice.id
            )
            INSERT INTO invoices_invoiceevent (invoice_id, action, actor_id, at, detail)
            SELECT id, 'flagged stale', NULL, now(),
                   jsonb_build_object('reason', 'a manual line changed')
              FROM flagged;
            RETURN NULL;
        """

    scope = "client_id, period_start, period_end"
    changed = (
        f"FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE {_distinct(MANUAL_LINE_COLUMNS)}"
    )
    return [
        pgtrigger.Trigger(
            name="manual_line_insert_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Insert,
            referencing=pgtrigger.Referencing(new="new_rows"),
            func=mark(f"SELECT {scope} FROM new_rows"),
        ),
        pgtrigger.Trigger(
            name="manual_line_update_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Update,
            referencing=pgtrigger.Referencing(old="old_rows", new="new_rows"),
            declare=[("frozen", "RECORD")],
            func=refuse_billed(
                "JOIN new_rows n ON n.id = o.id",
                f"{_distinct(MANUAL_LINE_COLUMNS)} OR n.invoice_id IS DISTINCT FROM o.invoice_id",
            )
            + mark(
                f"SELECT n.client_id, n.period_start, n.period_end {changed} "
                f"UNION SELECT o.client_id, o.period_start, o.period_end {changed}"
            ),
        ),
        pgtrigger.Trigger(
            name="manual_line_delete_marks",
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=pgtrigger.Delete,
            referencing=pgtrigger.Referencing(old="old_rows"),
            declare=[("frozen", "RECORD")],
            func=refuse_billed() + mark(f"SELECT {scope} FROM old_rows"),
        ),
    ]


pgtrigger.register(*_adjustment_marks())(EntryAdjustment)
pgtrigger.register(*_manual_line_marks())(ManualLine)
