"""The UTBMS code sets (task, activity and expense codes) that LEDES invoices carry.

The codes are data, published by the ABA and kept as CSV files under invoices/data/utbms (its
README names each source); the data migration 0014 and `manage.py load_utbms` load them into
this table with `load_utbms_codes`. Categories name their default task and activity codes as
text, checked against this table by the validators below, so a code that is not in the
published set is refused with its name in the message (admin, rules file).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import models

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "utbms"


class UtbmsCode(models.Model):
    class Kind(models.TextChoices):
        TASK = "task", "Task (or phase)"
        ACTIVITY = "activity", "Activity"
        EXPENSE = "expense", "Expense"

    code = models.CharField(max_length=10, primary_key=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    code_set = models.CharField(max_length=20, help_text="litigation, bankruptcy, ...")
    name = models.CharField(max_length=200)
    phase = models.CharField(
        max_length=10, blank=True, help_text="The phase a task rolls up to; empty for a phase."
    )

    class Meta:
        ordering = ["code"]
        verbose_name = "UTBMS code"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


# Which file holds which set, and what kind of code it lists.
CODE_FILES: dict[str, tuple[str, str]] = {
    "litigation": ("litigation.csv", UtbmsCode.Kind.TASK),
    "bankruptcy": ("bankruptcy.csv", UtbmsCode.Kind.TASK),
    "counseling": ("counseling.csv", UtbmsCode.Kind.TASK),
    "activities": ("activities.csv", UtbmsCode.Kind.ACTIVITY),
    "expenses": ("expenses.csv", UtbmsCode.Kind.EXPENSE),
}


@dataclass(frozen=True)
class PublishedCode:
    code: str
    kind: str
    code_set: str
    name: str
    phase: str


def published_codes(data_dir: Path = DATA_DIR) -> list[PublishedCode]:
    """Every code of the CSV files, in file order; a code listed twice is a broken file."""
    found: dict[str, PublishedCode] = {}
    for code_set, (filename, kind) in CODE_FILES.items():
        with open(data_dir / filename, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                code = row["code"].strip()
                if code in found:
                    raise ValueError(f"UTBMS code {code} is listed twice ({filename})")
                found[code] = PublishedCode(
                    code, str(kind), code_set, row["name"].strip(), row["phase"].strip()
                )
    return list(found.values())


def load_utbms_codes(model: type[models.Model] | None = None) -> tuple[int, int]:
    """Adds the published codes that are missing and updates changed names; returns (added,
    updated). It never deletes a code: a stored invoice or category may still name it.

    `model` is the migration's historical model when a data migration calls this."""
    table = model or UtbmsCode
    existing = {row.code: row for row in table.objects.all()}  # type: ignore[attr-defined]
    added = updated = 0
    for item in published_codes():
        values = {
            "kind": item.kind,
            "code_set": item.code_set,
            "name": item.name,
            "phase": item.phase,
        }
        row = existing.get(item.code)
        if row is None:
            table.objects.create(code=item.code, **values)  # type: ignore[attr-defined]
            added += 1
        elif any(getattr(row, field) != value for field, value in values.items()):
            table.objects.filter(code=item.code).update(**values)  # type: ignore[attr-defined]
            updated += 1
    return added, updated


def _validate(value: str, kind: str, what: str, example: str) -> None:
    if value and not UtbmsCode.objects.filter(code=value, kind=kind).exists():
        raise ValidationError(
            f"{value!r} is not a UTBMS {what} code (e.g. {example}; the code sets are listed "
            "under UTBMS codes)",
            code="not_utbms",
        )


def validate_task_code(value: str) -> None:
    _validate(value, UtbmsCode.Kind.TASK, "task", "L120")


def validate_activity_code(value: str) -> None:
    _validate(value, UtbmsCode.Kind.ACTIVITY, "activity", "A104")


def validate_expense_code(value: str) -> None:
    _validate(value, UtbmsCode.Kind.EXPENSE, "expense", "E101")
