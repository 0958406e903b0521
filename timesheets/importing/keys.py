"""Stable keys for entries of CSV exports, which carry no ids, and hashes of their content.

The key (`TimeEntry.external_id`) must name the same tracked entry in every export that contains
it, so that re-importing a file, or an overlapping export (Oct 1-31, then Oct 15-Nov 15), finds
the entries it already holds instead of duplicating them. It is therefore a hash of the entry's
*identity*, never of its content:

    sha256(version, source, person id, date, project id, task, start time, occurrence)

- Content (duration, notes, billable flag) is left out on purpose: when someone corrects the
  hours or the notes at the source, the next import finds the same key with a different
  `content_hash`, which is an update of the same entry (or, for an entry on an approved
  invoice, a recorded pending change), not a second entry.
- The start time is part of the identity where the format has one (Clockify, Toggl); Harvest's
  export has none, so there the identity is person, day, project and task.
- `occurrence` is the index of the row among the rows of the same file that share the rest of
  the identity, in file order. Two genuinely identical rows (two 0.5 h calls on the same
  project and day) stay two entries; because the identity includes the day, every export that
  covers a day carries all of that day's rows, so the index is the same in any export that
  covers the day, which is what makes overlapping exports safe.
- People and projects enter by database id, not by the spelling in the file: a change of case
  in a name or a renamed person with the same email keeps the key.

What this key cannot know: an entry moved at the source to another day, person, project or
task (or a Clockify/Toggl start time changed) looks like a new entry, and the old one stays,
because an export may be partial and absence from it proves nothing. Likewise, when an entry is
added or deleted at the source among several with the same identity, the occurrence indexes
after it shift: the totals stay right (no duplicates), but the content moves between those
entries, and any of them on an approved invoice reports a pending change for review.

The "csv-" prefix keeps these keys apart from ids of the trackers' APIs. 40 hex digits (160
bits) leave collisions out of reach and fit `external_id` (100 characters).
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, time
from typing import Any

KEY_PREFIX = "csv-"
KEY_HEX_DIGITS = 40
# Part of every hashed payload, so a future change of what is hashed is explicit and cannot
# silently collide with keys of this version.
KEY_VERSION = "v1"


@dataclass(frozen=True)
class Identity:
    person_id: int
    date: date
    project_id: int
    task: str
    start_time: time | None


def _digest(payload: list[Any]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def task_key(task: str) -> str:
    # "Project Management" and "project  management" are one task; the stored task keeps the
    # spelling of the export.
    return " ".join(task.split()).casefold()


def external_ids(*, source: str, identities: Iterable[Identity]) -> Iterator[str]:
    """One key per identity, in order, numbering repeated identities by occurrence."""
    seen: Counter[Identity] = Counter()
    for identity in identities:
        normalized = Identity(
            person_id=identity.person_id,
            date=identity.date,
            project_id=identity.project_id,
            task=task_key(identity.task),
            start_time=identity.start_time,
        )
        occurrence = seen[normalized]
        seen[normalized] += 1
        payload = [
            KEY_VERSION,
            source,
            normalized.person_id,
            normalized.date.isoformat(),
            normalized.project_id,
            normalized.task,
            normalized.start_time.isoformat() if normalized.start_time else "",
            occurrence,
        ]
        yield KEY_PREFIX + _digest(payload)[:KEY_HEX_DIGITS]


def content_hash(content: dict[str, Any]) -> str:
    """sha256 of an entry's content as the source reports it (JSON-safe values, sorted keys):
    any change at the source, and only a change, gives a different hash."""
    return _digest([KEY_VERSION, sorted(content.items())])


# --- the same keys and hashes, built as text for the streaming import -------------------------
# `external_ids` and `content_hash` through json.dumps cost more than the rest of a row; these
# write the same JSON text directly (tests/test_csv_keys.py holds them equal on varied values).

_json_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes
_JSON_BOOL = {True: "true", False: "false"}


def identity_text(
    *,
    source: str,
    person_id: int,
    date_iso: str,
    project_id: int,
    task: str,
    start_iso: str,
) -> str:
    """The JSON of an entry's identity as `external_ids` hashes it, without its occurrence and
    closing bracket (`external_id_of` adds them). `task` as `task_key` gives it."""
    return (
        f'["{KEY_VERSION}",{_json_string(source)},{person_id},"{date_iso}",{project_id},'
        f'{_json_string(task)},"{start_iso}",'
    )


def external_id_of(identity: str, occurrence: int) -> str:
    digest = hashlib.sha256(f"{identity}{occurrence}]".encode()).hexdigest()
    return KEY_PREFIX + digest[:KEY_HEX_DIGITS]


def content_hash_of(
    *,
    client_id: int,
    date_iso: str,
    duration_seconds: int,
    notes: str,
    person_id: int,
    project_id: int,
    start_iso: str | None,
    task: str,
    tracker_approved: bool | None,
    tracker_billable: bool,
    tracker_invoiced: bool,
) -> str:
    """`content_hash` of the content `EntryValues.content()` gives for these values (its keys
    sorted; the tracker's state only when it differs from the defaults)."""
    start = f'"{start_iso}"' if start_iso is not None else "null"
    text = (
        f'["{KEY_VERSION}",[["client_id",{client_id}],["date","{date_iso}"],'
        f'["duration_seconds",{duration_seconds}],["notes",{_json_string(notes)}],'
        f'["person_id",{person_id}],["project_id",{project_id}],["start_time",{start}],'
        f'["task",{_json_string(task)}]'
    )
    if tracker_approved is not None:
        text += f',["tracker_approved",{_JSON_BOOL[tracker_approved]}]'
    text += f',["tracker_billable",{_JSON_BOOL[tracker_billable]}]'
    if tracker_invoiced:
        text += ',["tracker_invoiced",true]'
    return hashlib.sha256(f"{text}]]".encode()).hexdigest()
