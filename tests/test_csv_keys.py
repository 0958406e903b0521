"""The streaming import's text-built keys and hashes equal those of `external_ids` and
`content_hash` (json.dumps), so entries imported before it keep their keys and hashes."""

import random
from datetime import date, time

import pytest

from timesheets.importing.entry_writes import RowEntry
from timesheets.importing.keys import (
    Identity,
    content_hash,
    content_hash_of,
    external_id_of,
    external_ids,
    identity_text,
    task_key,
)

TEXTS = [
    "",
    "Client call re: scope change",
    'He said "stop" \\ then left',
    "Zeilen\numbruch\r\nund\ttab",
    "émigré — naïve 日本語 🙂",
    "\x00\x01\x1f control",
    '=HYPERLINK("http://x")',
    "  Project  Management ",
    "\u2028line separator\u2029",
]


def _cases(count):
    rng = random.Random(12)
    for _ in range(count):
        yield {
            "person_id": rng.randint(1, 10**6),
            "client_id": rng.randint(1, 10**6),
            "project_id": rng.randint(1, 10**6),
            "task": rng.choice(TEXTS),
            "date": date(2026, rng.randint(1, 12), rng.randint(1, 28)),
            "start_time": rng.choice([None, time(rng.randint(0, 23), rng.randint(0, 59), 5)]),
            "duration_seconds": rng.randint(0, 86400),
            "notes": rng.choice(TEXTS) + rng.choice(TEXTS),
            "tracker_billable": rng.random() < 0.5,
            "tracker_invoiced": rng.random() < 0.5,
            "tracker_approved": rng.choice([None, True, False]),
        }


@pytest.mark.parametrize("values", list(_cases(300)))
def test_content_hash_of_is_content_hash(values):
    entry = RowEntry(external_id="x", content_hash="", normalized_notes="", **values)
    start = values["start_time"]
    assert content_hash_of(
        client_id=values["client_id"],
        date_iso=values["date"].isoformat(),
        duration_seconds=values["duration_seconds"],
        notes=values["notes"],
        person_id=values["person_id"],
        project_id=values["project_id"],
        start_iso=start.isoformat() if start else None,
        task=values["task"],
        tracker_approved=values["tracker_approved"],
        tracker_billable=values["tracker_billable"],
        tracker_invoiced=values["tracker_invoiced"],
    ) == content_hash(entry.content())


@pytest.mark.parametrize("source", ["harvest", "clockify", "toggl"])
def test_external_id_of_is_external_ids(source):
    identities = [
        Identity(
            person_id=values["person_id"] % 3,
            date=values["date"],
            project_id=values["project_id"] % 2,
            task=values["task"],
            start_time=values["start_time"],
        )
        for values in _cases(200)
    ]
    identities += identities[:50]  # repeats: their occurrence numbers count up
    seen: dict[str, int] = {}
    texts = []
    for identity in identities:
        text = identity_text(
            source=source,
            person_id=identity.person_id,
            date_iso=identity.date.isoformat(),
            project_id=identity.project_id,
            task=task_key(identity.task),
            start_iso=identity.start_time.isoformat() if identity.start_time else "",
        )
        texts.append(external_id_of(text, seen.get(text, 0)))
        seen[text] = seen.get(text, 0) + 1
    assert texts == list(external_ids(source=source, identities=identities))
