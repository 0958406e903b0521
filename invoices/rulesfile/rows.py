"""The configuration rows a rules file lists (classification rules, rates, billing codes, rate
multipliers, caps), each matched by its natural key to the database row it updates.

Natural keys, so that an unchanged row is the same row, with the same id, after an import:
- a classification rule: its client, matchers (task ignoring case, notes_regex, project) and
  category; the priority is a value the import may update;
- a rate row: its target (client, project, person, role ignoring case) and `from` date; the
  rate, `to` and the role's spelling are values;
- a billing code and a rate multiplier: client and category; a cap: its project.

Rows the file does not list but that lie in its scope (firm-wide rows, rows of the clients it
lists) are `unlisted`: the import reports them and deletes them only when asked to (prune).
Rows of clients the file does not list are outside its scope and never looked at.

Matching runs before anything is written, so references to rows the import is about to create
(a new client, project, person or category) are keys that match nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from invoices.models import BillingCode, Cap, ClassificationRule, Rate

# An existing row's id, or a marker for one the import will create (it matches no row).
Ref = int | tuple[str, Any] | None


@dataclass(frozen=True)
class Refs:
    """The file's names for clients, projects, people and categories -> existing row ids."""

    clients: dict[int, int]  # client index in the file -> id
    projects: dict[str, int]  # casefolded project code -> id
    people: dict[str, int]  # casefolded email -> id
    categories: dict[str, int]  # key -> id

    def client(self, index: int | None) -> Ref:
        if index is None:
            return None
        return self.clients.get(index, ("new client", index))

    def project(self, code: str | None) -> Ref:
        if code is None:
            return None
        return self.projects.get(code.casefold(), ("new project", code.casefold()))

    def person(self, email: str | None) -> Ref:
        if email is None:
            return None
        return self.people.get(email.casefold(), ("new person", email.casefold()))

    def category(self, key: str) -> Ref:
        return self.categories.get(key, ("new category", key))


@dataclass
class Wanted:
    """One row the file lists, and the existing row it updates (None: created)."""

    path: str  # where in the file: `rules[2]`, `clients[0].billing_codes.travel`
    client: int | None  # client index in the file; None for firm-wide rows
    spec: Any  # RuleSpec, a rate spec, a CapSpec, or a (category key, value) pair
    key: tuple[Any, ...]
    existing: Any = None
    # Rules only: the existing row is deleted and the rule created anew, so that rules of
    # equal priority keep the file's order of trial (which is id order).
    recreate: bool = False


@dataclass
class Matched:
    wanted: list[Wanted] = field(default_factory=list)
    unlisted: list[Any] = field(default_factory=list)  # in the scope, not in the file

    def updates(self) -> list[Wanted]:
        return [w for w in self.wanted if w.existing is not None and not w.recreate]

    def creations(self) -> list[Wanted]:
        return [w for w in self.wanted if w.existing is None or w.recreate]

    def recreated(self) -> list[Any]:
        return [w.existing for w in self.wanted if w.recreate]


def match(
    wanted: list[Wanted],
    rows: Iterable[models.Model],
    key_of: Callable[[Any], tuple[Any, ...]],
    prefer: Callable[[Wanted, list[Any]], Any] | None = None,
) -> Matched:
    """Give each wanted row at most one existing row of its key; the rest are unlisted."""
    pool: dict[tuple[Any, ...], list[Any]] = {}
    for row in sorted(rows, key=lambda r: r.pk):
        pool.setdefault(key_of(row), []).append(row)
    for item in wanted:
        candidates = pool.get(item.key)
        if not candidates:
            continue
        chosen = prefer(item, candidates) if prefer else candidates[0]
        candidates.remove(chosen)
        item.existing = chosen
    unlisted = sorted((row for rows in pool.values() for row in rows), key=lambda r: r.pk)
    return Matched(wanted=wanted, unlisted=unlisted)


# --- keys -----------------------------------------------------------------------------------


def rule_key(
    client: Ref, task: str, notes_regex: str, project: Ref, category: Ref
) -> tuple[Any, ...]:
    # Tasks match ignoring case, so two spellings are one matcher.
    return (client, task.casefold(), notes_regex, project, category)


def rule_row_key(row: ClassificationRule) -> tuple[Any, ...]:
    return rule_key(row.client_id, row.task, row.notes_regex, row.project_id, row.category_id)


def rate_key(
    client: Ref, project: Ref, person: Ref, role: str, valid_from: dt.date | None
) -> tuple[Any, ...]:
    return (client, project, person, role.casefold(), valid_from)


def rate_client_id(row: Rate) -> int | None:
    # A project row belongs to its project's client (as invoices.configuration reads it).
    return row.project.client_id if row.project is not None else row.client_id


def rate_row_key(row: Rate) -> tuple[Any, ...]:
    return rate_key(rate_client_id(row), row.project_id, row.person_id, row.role, row.valid_from)


def same_priority_first(item: Wanted, candidates: list[ClassificationRule]) -> ClassificationRule:
    return next((r for r in candidates if r.priority == item.spec.priority), candidates[0])


def keep_order_of_trial(rules: list[Wanted]) -> None:
    """Mark the rules to re-create so that, in each scope, rules of equal priority are tried in
    the order of the file. Trial order among equal priorities is id order, and a created row
    gets an id above every existing one; so in each group (in file order) the existing rows
    with rising ids are kept up to the first new rule or the first fall in ids, and every
    existing row after that point is re-created: the fewest rows that can keep the order."""
    groups: dict[tuple[Ref, int], list[Wanted]] = {}
    for item in rules:
        groups.setdefault((item.key[0], item.spec.priority), []).append(item)
    for group in groups.values():
        last_id = 0
        broken = False
        for item in group:
            if item.existing is None:
                broken = True
            elif broken or item.existing.pk < last_id:
                item.recreate = True
                broken = True
            else:
                last_id = item.existing.pk


# --- what a row is, in words ------------------------------------------------------------------


def describe_rule(row: ClassificationRule) -> str:
    scope = row.client.name if row.client is not None else "firm-wide"
    matchers = []
    # Quoted as written, not repr(): a pattern's backslashes read as in the file.
    if row.task:
        matchers.append(f"task '{row.task}'")
    if row.notes_regex:
        matchers.append(f"notes_regex '{row.notes_regex}'")
    if row.project is not None:
        matchers.append(f"project {row.project.code or row.project.name}")
    return (
        f"rule #{row.pk} ({scope}: {', '.join(matchers)}, priority {row.priority} "
        f"-> {row.category.key})"
    )


def rate_target(row: Rate) -> str:
    parts = []
    if row.project is not None:
        parts.append(f"project {row.project.code or row.project.name}")
    if row.person is not None:
        parts.append(f"person {row.person.email}")
    if row.role:
        parts.append(f"role {row.role}")
    return " + ".join(parts) or "client rate"


def date_range(start: dt.date | None, end: dt.date | None) -> str:
    lo = start.isoformat() if start else "open"
    hi = end.isoformat() if end else "open"
    return f"{lo}..{hi}"


def describe_rate(row: Rate) -> str:
    # A project row belongs to its project's client (see rate_client_id).
    owner = row.project.client if row.project is not None else row.client
    scope = owner.name if owner is not None else "firm-wide"
    when = date_range(row.valid_from, row.valid_to)
    return f"rate #{row.pk} ({scope}: {rate_target(row)}, {when}: {row.rate})"


def describe_billing_code(row: BillingCode) -> str:
    return f"{row.client.name}: {row.category.key} {row.code}"


def describe_multiplier(row: Any) -> str:
    return f"{row.client.name}: {row.category.key} x {row.factor}"


def describe_cap(row: Cap) -> str:
    return f"{row.project.client.name}: {row.project.code or row.project.name} <= {row.amount}"
