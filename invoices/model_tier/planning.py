"""Planning requests: one client's entries grouped by normalized note and cut into requests,
each prompt carrying the client's rules and examples (its cached prefix)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from integrations.claude import CategoryOption, ClassificationPrompt, Example, NoteItem
from invoices.configuration import Configuration
from invoices.core.classify import AMBIGUOUS
from invoices.models import Classification, ClassificationRule, InvoiceStatus
from timesheets.models import Client, TimeEntry

# A note that reads like instructions to the model is asked on its own: whatever it makes the
# model do can then only touch that note's entries.
SUSPICIOUS = re.compile(
    r"(?i)\b(ignore|disregard|forget)\b.{0,30}\b(instructions?|rules?|prompt)\b"
    r"|\bsystem\s*(prompt|:)|\byou are (now )?(an?|the)\b|\bclassify (every|all)\b"
    r"|\bset (the )?(hours?|rates?|amounts?|category)\b|</?\s*(system|instructions?|entries)\s*>"
)


@dataclass
class NoteGroup:
    """Entries of one client sharing a normalized note: asked once, as `ref`."""

    ref: str
    note: str
    entry_ids: list[int]

    @property
    def suspicious(self) -> bool:
        return bool(SUSPICIOUS.search(self.note))


@dataclass
class PlannedRequest:
    client_id: int
    custom_id: str
    prompt: ClassificationPrompt
    groups: dict[str, NoteGroup]

    @property
    def entry_ids(self) -> list[int]:
        return [i for g in self.groups.values() for i in g.entry_ids]


@dataclass
class ClientPlan:
    requests: list[PlannedRequest]
    no_note: list[int]  # nothing to ask: an empty note


def plan_client(
    client: Client,
    entries: Iterable[TimeEntry],
    *,
    config: Configuration,
    memory: dict[str, str],
    batch_size: int,
    dedupe: bool = True,
) -> ClientPlan:
    """Group one client's entries by note and cut them into requests, deterministically (the
    same entries always give the same requests: the batch path relies on it)."""
    groups: dict[str, NoteGroup] = {}
    no_note: list[int] = []
    for entry in sorted(entries, key=lambda e: e.id):
        key = entry.normalized_notes
        if not key:
            no_note.append(entry.id)
            continue
        if memory.get(key) == AMBIGUOUS:
            continue  # tier 3 holds this note for a reviewer; the model is not consulted
        group_key = key if dedupe else str(entry.id)
        if group_key in groups:
            groups[group_key].entry_ids.append(entry.id)
        else:
            groups[group_key] = NoteGroup(
                ref=f"e{entry.id}", note=entry.notes, entry_ids=[entry.id]
            )
    ordered = list(groups.values())
    alone = [[g] for g in ordered if g.suspicious]
    rest = [g for g in ordered if not g.suspicious]
    chunks = [rest[i : i + batch_size] for i in range(0, len(rest), max(1, batch_size))] + alone
    base = dict(
        client_name=client.name,
        categories=_category_options(config),
        client_rules=_client_rules(client, config),
        examples=_examples(client.id),
    )
    requests = [
        PlannedRequest(
            client_id=client.id,
            custom_id=f"c{client.id}-{n}",
            prompt=ClassificationPrompt(
                items=tuple(NoteItem(g.ref, g.note) for g in chunk), **base
            ),
            groups={g.ref: g for g in chunk},
        )
        for n, chunk in enumerate(chunks, start=1)
    ]
    return ClientPlan(requests=requests, no_note=no_note)


def _category_options(config: Configuration) -> tuple[CategoryOption, ...]:
    return tuple(
        CategoryOption(key=c.key, name=c.name, billable=c.billable)
        for c in sorted(config.categories.values(), key=lambda c: c.key)
    )


def _client_rules(client: Client, config: Configuration) -> tuple[str, ...]:
    lines = []
    for rule in (
        ClassificationRule.objects.filter(client=client)
        .select_related("category", "project")
        .order_by("priority", "id")
    ):
        matchers = []
        if rule.task:
            matchers.append(f"task is '{rule.task}'")
        if rule.notes_regex:
            matchers.append(f"notes match /{rule.notes_regex}/")
        if rule.project_id:
            matchers.append(f"project is {rule.project}")
        lines.append(f"{' and '.join(matchers)} -> {rule.category.key}")
    policy = config.policy(client.id)
    if policy.non_billable_categories:
        lines.append(
            "not billed to this client: " + ", ".join(sorted(policy.non_billable_categories))
        )
    return tuple(lines)


def _examples(client_id: int) -> tuple[Example, ...]:
    """A few of the client's notes as reviewers decided them: their manual decisions first
    (the newest), then entries on approved invoices. Sorted by note, so the cached prompt
    prefix stays byte-identical while the examples do not change."""
    limit = settings.CLASSIFIER_MAX_EXAMPLES
    if limit <= 0:
        return ()
    manual = (
        Classification.objects.filter(entry__client_id=client_id, manual_category__isnull=False)
        .exclude(entry__normalized_notes="")
        .order_by("-manual_at", "-entry_id")
        .values_list(
            "entry__notes",
            "entry__normalized_notes",
            "manual_category__key",
            "manual_description",
            "description",
        )[: limit * 4]
    )
    approved = (
        Classification.objects.filter(
            entry__client_id=client_id,
            entry__invoice_links__is_live=True,
            entry__invoice_links__invoice__status=InvoiceStatus.APPROVED,
            category__isnull=False,
        )
        .exclude(entry__normalized_notes="")
        .order_by("-entry_id")
        .values_list(
            "entry__notes",
            "entry__normalized_notes",
            "category__key",
            "manual_description",
            "description",
        )[: limit * 4]
    )
    chosen: dict[str, Example] = {}
    for notes, normalized, key, manual_description, description in [*manual, *approved]:
        if normalized not in chosen and len(chosen) < limit:
            chosen[normalized] = Example(
                note=notes,
                category=key,
                description=manual_description or description or notes,
            )
    return tuple(sorted(chosen.values(), key=lambda e: (e.note, e.category)))
