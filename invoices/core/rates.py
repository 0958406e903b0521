"""The nine-level rate table of billing semantics section 5."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum


class RateLevel(IntEnum):
    PROJECT_PERSON = 1
    PROJECT_ROLE = 2
    PROJECT = 3
    CLIENT_PERSON = 4
    CLIENT_ROLE = 5
    CLIENT = 6
    PERSON = 7
    ROLE = 8
    FIRM_DEFAULT = 9

    @property
    def label(self) -> str:
        return f"{self.value}. " + self.name.replace("_", " + ").lower().replace(
            "firm + default", "firm default"
        )


def level_of(*, project: bool, client: bool, person: bool, role: bool) -> RateLevel:
    if person and role:
        raise ValueError("a rate row names a person or a role, not both")
    if project:
        base = RateLevel.PROJECT
    elif client:
        base = RateLevel.CLIENT
    else:
        if person:
            return RateLevel.PERSON
        if role:
            return RateLevel.ROLE
        return RateLevel.FIRM_DEFAULT
    if person:
        return RateLevel(base - 2)
    if role:
        return RateLevel(base - 1)
    return base


# Rows with the same target compete for the same entries: (client, project, person, role).
RateTarget = tuple[int | None, int | None, int | None, str]


@dataclass(frozen=True)
class RateRow:
    """One row. `client`/`project`/`person` are ids (or None); `role` is a name (or "")."""

    id: int | str | None
    rate: Decimal
    client: int | None = None
    project: int | None = None
    person: int | None = None
    role: str = ""
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None

    @property
    def level(self) -> RateLevel:
        return level_of(
            project=self.project is not None,
            client=self.client is not None,
            person=self.person is not None,
            role=bool(self.role),
        )

    @property
    def target(self) -> RateTarget:
        """Rows with the same target compete for the same entries."""
        return (self.client, self.project, self.person, self.role.casefold())

    def effective_on(self, day: dt.date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )

    def overlaps(self, other: RateRow) -> bool:
        lo = max(self.valid_from or dt.date.min, other.valid_from or dt.date.min)
        hi = min(self.valid_to or dt.date.max, other.valid_to or dt.date.max)
        return lo <= hi


@dataclass(frozen=True)
class RateMatch:
    row: RateRow
    level: RateLevel


def find_overlaps(rows: Iterable[RateRow]) -> list[tuple[RateRow, RateRow]]:
    """Pairs of rows with the same target whose date ranges overlap (a configuration error)."""
    by_target: dict[RateTarget, list[RateRow]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append(row)
    conflicts = []
    for group in by_target.values():
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                if first.overlaps(second):
                    conflicts.append((first, second))
    return conflicts


class RateTable:
    """Rows indexed by target so each lookup tries at most nine small lists."""

    def __init__(self, rows: Iterable[RateRow]):
        self._by_target: dict[RateTarget, list[RateRow]] = {}
        for row in rows:
            self._by_target.setdefault(row.target, []).append(row)

    def resolve(
        self, *, day: dt.date, client: int, project: int, person: int, role: str
    ) -> RateMatch | None:
        role_key = role.casefold() if role else None
        candidates = [
            (client, project, person, ""),
            (client, project, None, role_key),
            (client, project, None, ""),
            (client, None, person, ""),
            (client, None, None, role_key),
            (client, None, None, ""),
            (None, None, person, ""),
            (None, None, None, role_key),
            (None, None, None, ""),
        ]
        for level, (of_client, of_project, of_person, of_role) in zip(
            RateLevel, candidates, strict=True
        ):
            if of_role is None:  # a role level, and the person has no role
                continue
            for row in self._by_target.get((of_client, of_project, of_person, of_role), ()):
                if row.effective_on(day):
                    return RateMatch(row=row, level=level)
        return None
