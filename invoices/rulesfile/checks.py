"""The checks of an import plan that only the database can make: a project code that belongs
to another client, a renamed project taking the name of one the file does not list, a kept rate
the file would overlap, a pruned category still in use. They run before anything is written,
and every problem found is reported together."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q

from invoices.models import (
    BillingCode,
    Classification,
    ClassificationRule,
    InvoiceLine,
    Rate,
    RateMultiplier,
    UtbmsCode,
)
from invoices.rulesfile import rows
from invoices.rulesfile.errors import RulesError
from invoices.rulesfile.planning import Plan
from timesheets.models import Project


def problems(plan: Plan) -> list[RulesError]:
    """Everything only the database can reveal, collected before anything is written."""
    errors: list[RulesError] = []
    for (ci, pj), existing in sorted(plan.foreign_codes.items()):
        errors.append(
            RulesError(
                path=f"clients[{ci}].projects[{pj}].code",
                message=f"project {existing.code!r} belongs to client "
                f"{existing.client.name!r} in the database; a project cannot move to "
                "another client",
            )
        )
    errors.extend(_name_clashes(plan))
    errors.extend(_unknown_utbms_codes(plan))
    if plan.prune:
        errors.extend(_absent_categories_in_use(plan))
    else:
        errors.extend(_overlaps_with_kept_rates(plan))
    return errors


def _overlaps_with_kept_rates(plan: Plan) -> list[RulesError]:
    """A rate the file does not list is kept (without prune): the file's rows for the same
    target must leave room for it, or the database's exclusion constraint would refuse the
    import with no word of which rows."""
    errors = []
    kept: dict[tuple[Any, ...], list[Rate]] = {}
    for row in plan.rates.unlisted:
        kept.setdefault(rows.rate_row_key(row)[:4], []).append(row)
    for item in plan.rates.wanted:
        start, end = item.spec.valid_from, item.spec.valid_to
        for row in kept.get(item.key[:4], []):
            lo = max(start or dt.date.min, row.valid_from or dt.date.min)
            hi = min(end or dt.date.max, row.valid_to or dt.date.max)
            if lo > hi:
                continue
            errors.append(
                RulesError(
                    path=item.path,
                    message=f"overlaps rate #{row.pk} ({rows.rate_target(row)}, "
                    f"{rows.date_range(*_open(lo, hi))}), which the file does not list; "
                    "list it in the file, or end this row before it, or import with --prune",
                )
            )
    return errors


def _name_clashes(plan: Plan) -> list[RulesError]:
    """A renamed project may not take the name of a project the file does not list."""
    errors = []
    matched_ids = {p.id for p in plan.projects.values()}
    for ci, spec in enumerate(plan.document.clients):
        client = plan.clients[ci]
        if client is None:
            continue
        unlisted = {
            p.name.casefold(): p
            for p in Project.objects.filter(client=client).exclude(id__in=matched_ids)
        }
        for pj, project_spec in enumerate(spec.projects):
            if (ci, pj) in plan.foreign_codes:
                continue  # reported as such; its name is moot until that is settled
            other = unlisted.get(project_spec.name.casefold())
            if other is not None:
                code = f" (code {other.code})" if other.code else ""
                errors.append(
                    RulesError(
                        path=f"clients[{ci}].projects[{pj}].name",
                        message=f"another project of this client is called {other.name!r}"
                        f"{code} in the database and the file does not list it; list it "
                        "or choose another name",
                    )
                )
    return errors


def _unknown_utbms_codes(plan: Plan) -> list[RulesError]:
    """A category's UTBMS codes must be in the code set (invoices/data/utbms), and of the kind
    the field names: L120 is a task, not an activity."""
    kinds = dict(UtbmsCode.objects.values_list("code", "kind"))
    errors = []
    for index, spec in enumerate(plan.document.categories):
        for field, kind, example in (
            ("utbms_task_code", UtbmsCode.Kind.TASK, "L120"),
            ("utbms_activity_code", UtbmsCode.Kind.ACTIVITY, "A104"),
        ):
            code = getattr(spec, field)
            if code and kinds.get(code) != kind:
                what = "task" if kind == UtbmsCode.Kind.TASK else "activity"
                errors.append(
                    RulesError(
                        path=f"categories[{index}].{field}",
                        message=f"{code!r} is not a UTBMS {what} code (e.g. {example}; the "
                        "code sets are in invoices/data/utbms)",
                    )
                )
    return errors


def _absent_categories_in_use(plan: Plan) -> list[RulesError]:
    listed = {c.key for c in plan.document.categories}
    absent = [c for key, c in sorted(plan.categories.items()) if key not in listed]
    if not absent:
        return []
    # With prune, the rows of the listed clients and firm-wide ones that the file does not
    # list are deleted and those it lists name listed categories, so only what stays
    # counts: classifications, invoice lines, and rows of clients not listed.
    listed_ids = [c.id for c in plan.clients.values() if c is not None]
    errors = []
    for category in absent:
        uses = []
        entries = Classification.objects.filter(
            Q(category=category) | Q(manual_category=category)
        ).count()
        if entries:
            uses.append(_counted(entries, "classified entry", "classified entries"))
        lines = InvoiceLine.objects.filter(category=category).count()
        if lines:
            uses.append(_counted(lines, "invoice line", "invoice lines"))
        for model, singular, plural in (
            (ClassificationRule, "rule", "rules"),
            (BillingCode, "billing code", "billing codes"),
            (RateMultiplier, "rate multiplier", "rate multipliers"),
        ):
            n = (
                model.objects.filter(category=category, client__isnull=False)
                .exclude(client_id__in=listed_ids)
                .count()
            )
            if n:
                uses.append(_counted(n, singular, plural) + " of clients not in the file")
        if uses:
            errors.append(
                RulesError(
                    path="categories",
                    message=f"{category.key!r} is absent but used by {_joined(uses)}; "
                    "keep it in the file",
                )
            )
    return errors


def _counted(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _joined(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _open(lo: dt.date, hi: dt.date) -> tuple[dt.date | None, dt.date | None]:
    return (None if lo == dt.date.min else lo, None if hi == dt.date.max else hi)
