"""The UTBMS codes of an invoice line.

A line's stored billing code (from the entry's classification, the client's code for the
category, or the category's, in that order, as drafting chose it) may hold UTBMS codes: one
or more tokens separated by spaces, "/", "," or ";" (`L120`, `L120/A104`). Each token that is
in the code set counts as what the code set says it is (task, activity or expense); what the
billing code does not give comes from the line's category (`utbms_task_code`,
`utbms_activity_code`) as it was when the line was drafted (kept in its derivation). So an
entry's own billing code overrides the category's default, and a free-text billing code that
is no UTBMS code (`X100`) simply gives none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from invoices.models import InvoiceLine, UtbmsCode

_TOKEN_SEPARATORS = re.compile(r"[\s/,;]+")


@dataclass(frozen=True)
class CodeSet:
    """The code set as loaded: each code and its kind (task, activity, expense)."""

    kinds: dict[str, str]

    @classmethod
    def load(cls) -> CodeSet:
        return cls(dict(UtbmsCode.objects.values_list("code", "kind")))

    def kind_of(self, code: str) -> str | None:
        return self.kinds.get(code)


@dataclass(frozen=True)
class LineCodes:
    task: str = ""
    activity: str = ""
    expense: str = ""


def line_codes(line: InvoiceLine, code_set: CodeSet) -> LineCodes:
    """The line's UTBMS codes: from its billing code first, then its category's defaults."""
    found: dict[str, str] = {}
    for token in _TOKEN_SEPARATORS.split(line.billing_code.strip().upper()):
        kind = code_set.kind_of(token)
        if kind is not None:
            found.setdefault(kind, token)
    # The category's defaults as drafted (invoices.drafting writes them into the derivation),
    # else as they are now, for a line drafted before drafting recorded them.
    drafted = (line.derivation or {}).get("utbms_defaults")
    category = line.category
    if drafted is None and category is not None:
        drafted = {"task": category.utbms_task_code, "activity": category.utbms_activity_code}
    if drafted:
        if drafted.get("task"):
            found.setdefault(UtbmsCode.Kind.TASK, drafted["task"])
        if drafted.get("activity"):
            found.setdefault(UtbmsCode.Kind.ACTIVITY, drafted["activity"])
    return LineCodes(
        task=found.get(UtbmsCode.Kind.TASK, ""),
        activity=found.get(UtbmsCode.Kind.ACTIVITY, ""),
        expense=found.get(UtbmsCode.Kind.EXPENSE, ""),
    )
