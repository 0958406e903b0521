"""Bulk inserts through PostgreSQL's COPY, for the tables a draft rewrites on every rebuild.

`bulk_create` compiles one placeholder and adapts each value in Python per row: for a 10,000
entry month its SQL compilation alone cost more than pricing the month. COPY streams the rows;
it fires the same constraints and statement triggers (the guards and audit trail of
`invoices.guards` and `invoices.history`), so nothing a trigger enforces is bypassed.

Values are written as psycopg adapts them (int, str, Decimal, date, None); JSON columns go
through their model field's own preparation, so they are stored exactly as the ORM would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models
from django.utils import timezone


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """`count` fresh primary keys from the table's own sequence (one query), so that rows
    written by COPY can be referenced before they are written."""
    if count == 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, model._meta.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def copy_rows(
    model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """COPY `rows` (tuples in the order of `fields`, attribute names such as "invoice_id")
    into the model's table, in the current transaction. Database errors arrive as Django's
    (an `IntegrityError` for a unique or check constraint), as from any query."""
    return _copy_into(model._meta.db_table, _fields(model, fields), rows)


def upsert_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    unique: str,
    update: Sequence[str],
) -> int:
    """Insert `rows`, or set the `update` columns of the row with the same `unique` value:
    what `bulk_create(update_conflicts=True)` does, by COPY into a temporary table and one
    `INSERT ... ON CONFLICT`, so the table's statement triggers run once over all the rows.

    A new row's columns not in `fields` take their model defaults (an `auto_now` one: now),
    as the ORM would give them."""
    opts = model._meta
    given = _fields(model, fields)
    rest = [
        field
        for field in opts.concrete_fields
        if field not in given and not (field.primary_key and field.db_returning)
    ]
    defaults = [_default(field) for field in rest]
    columns = ", ".join(f'"{field.column}"' for field in [*given, *rest])
    assignments = ", ".join(
        f'"{field.column}" = EXCLUDED."{field.column}"' for field in _fields(model, update)
    )
    (conflict,) = _fields(model, [unique])
    temp = f"upsert_{opts.db_table}"
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TEMPORARY TABLE "{temp}" ON COMMIT DROP AS '
            f'SELECT {columns} FROM "{opts.db_table}" WITH NO DATA'
        )
        written = _copy_into(temp, [*given, *rest], ([*row, *defaults] for row in rows))
        cursor.execute(
            f'INSERT INTO "{opts.db_table}" ({columns}) SELECT {columns} FROM "{temp}" '
            f'ON CONFLICT ("{conflict.column}") DO UPDATE SET {assignments}'
        )
        cursor.execute(f'DROP TABLE "{temp}"')
    return written


def _copy_into(
    table: str, columns: list[models.Field[Any, Any]], rows: Iterable[Sequence[Any]]
) -> int:
    json_columns = [i for i, field in enumerate(columns) if isinstance(field, models.JSONField)]
    sql = 'COPY "{}" ({}) FROM STDIN'.format(
        table, ", ".join(f'"{field.column}"' for field in columns)
    )
    written = 0
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                if json_columns:
                    row = list(row)
                    for i in json_columns:
                        row[i] = columns[i].get_db_prep_save(row[i], connection)
                copy.write_row(row)
                written += 1
    return written


def _fields(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    """Concrete fields by attribute name ("invoice_id") or field name ("invoice")."""
    by_name = {}
    for field in model._meta.concrete_fields:
        by_name[field.name] = by_name[field.attname] = field
    return [by_name[name] for name in names]


def _default(field: models.Field[Any, Any]) -> Any:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now()
    value = field.get_default()
    return (
        field.get_db_prep_save(value, connection) if isinstance(field, models.JSONField) else value
    )
