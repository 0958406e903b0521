"""Classifies time entries with the tiers of billing semantics section 2.

The deterministic tiers (manual, rules, memory) run here. The language-model tier is a separate
worker that stores validated answers in `Classification.model_*`; this service reads them as the
fourth tier, so re-running it never loses a model answer or a reviewer's decision.

Memory (section 2.3) is the client's approved entries and its reviewers' decisions, any period,
the current one included (`client_memory`); a decision reclassifies what it may change in its
own transaction (`reclassify_after_decision`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from invoices.bulk_copy import upsert_rows
from invoices.configuration import Configuration, load_configuration
from invoices.core.classify import (
    EntryFacts,
    ManualDecision,
    ModelAnswer,
    classify,
    order_rules,
)
from invoices.core.memory import (
    ClientMemory,
    NearMatch,
    build_client_memory,
    near_matches,
    person_name_tokens,
)
from invoices.errors import BillingError
from invoices.models import Classification, InvoiceStatus
from timesheets.models import Person, Project, TimeEntry

CHUNK = 5000

# Fields a classification run owns; manual_* and model_* belong to reviewers and the model tier.
DECISION_FIELDS = [
    "category",
    "description",
    "tier",
    "rule",
    "confidence",
    "billable",
    "billing_code",
    "needs_review",
    "review_reason",
    "memory_note",
]


@dataclass
class ClassifySummary:
    entries: int = 0
    by_tier: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    needs_review: int = 0

    def __str__(self) -> str:
        tiers = ", ".join(f"{tier or 'undecided'} {n}" for tier, n in sorted(self.by_tier.items()))
        return f"{self.entries} entries classified ({tiers}); {self.needs_review} need review"


def model_tier_status() -> str:
    """What an entry that no deterministic tier decides is told about the model tier."""
    if not settings.ANTHROPIC_API_KEY:
        return "no rule or approved history matched, and no model configured"
    return "no rule or approved history matched; waiting for the language model"


def confidence_threshold() -> Decimal:
    return Decimal(str(settings.CLASSIFIER_CONFIDENCE_THRESHOLD))


def entries_to_classify(
    *,
    entry_ids: Iterable[int] | None = None,
    client_ids: Iterable[int] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> QuerySet[TimeEntry]:
    """Entries a run may (re)classify: never those frozen on an approved invoice."""
    qs = TimeEntry.objects.filter(locked=False)
    if entry_ids is not None:
        qs = qs.filter(id__in=list(entry_ids))
    if client_ids is not None:
        qs = qs.filter(client_id__in=list(client_ids))
    if start is not None:
        qs = qs.filter(date__gte=start)
    if end is not None:
        qs = qs.filter(date__lte=end)
    return qs


class SimilarMemorySettingRefused(BillingError, ValueError):
    """SIMILAR_MEMORY_THRESHOLD is not a number in (0, 1]."""


def similar_memory_threshold() -> Decimal | None:
    """The similar-memory threshold, or None when the firm turned similar memory off."""
    if not settings.SIMILAR_MEMORY_ENABLED:
        return None
    raw = str(settings.SIMILAR_MEMORY_THRESHOLD).strip()
    try:
        threshold = Decimal(raw)
    except ArithmeticError:
        threshold = None
    if threshold is None or not threshold.is_finite() or not 0 < threshold <= 1:
        raise SimilarMemorySettingRefused(
            f"SIMILAR_MEMORY_THRESHOLD must be a number above 0 and at most 1, not {raw!r}"
        )
    return threshold


def client_memory(client_ids: Iterable[int]) -> dict[int, ClientMemory]:
    """Per client, tier 3: normalized notes -> category, from entries on approved invoices
    and from reviewers' decisions (any period, the current one included; the most recent
    decision about a note wins), with similar memory when the firm has it on. Three
    queries whatever the number of clients."""
    ids = list(client_ids)
    approved_rows = (
        Classification.objects.filter(
            entry__client_id__in=ids,
            entry__invoice_links__is_live=True,
            entry__invoice_links__invoice__status=InvoiceStatus.APPROVED,
            category__isnull=False,
        )
        .exclude(entry__normalized_notes="")
        .values_list("entry__client_id", "entry__normalized_notes", "entry__notes", "category__key")
        .order_by("entry__client_id", "entry_id")
    )
    decision_rows = (
        Classification.objects.filter(entry__client_id__in=ids, manual_category__isnull=False)
        .exclude(entry__normalized_notes="")
        .values_list(
            "entry__client_id", "entry__normalized_notes", "entry__notes", "manual_category__key"
        )
        # Oldest first: the last decision about a note is the one memory keeps.
        .order_by(F("manual_at").asc(nulls_first=True), "entry_id")
    )
    approved: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for client_id, normalized, notes, key in approved_rows.iterator(chunk_size=CHUNK):
        approved[client_id].append((normalized, notes, key))
    decisions: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for client_id, normalized, notes, key in decision_rows.iterator(chunk_size=CHUNK):
        decisions[client_id].append((normalized, notes, key))
    threshold = similar_memory_threshold()
    names = (
        person_name_tokens(Person.objects.values_list("name", flat=True))
        if threshold is not None and (approved or decisions)
        else frozenset()
    )
    return {
        client_id: build_client_memory(
            approved=approved.get(client_id, ()),
            decisions=decisions.get(client_id, ()),
            names=names,
            similar_threshold=threshold,
        )
        for client_id in set(approved) | set(decisions)
    }


def client_near_matches(*, client_id: int, notes: str, limit: int = 3) -> list[NearMatch]:
    """The client's decided notes closest to `notes` (note, category, score), for the model
    tier's prompt when similar memory did not decide. A run over many notes should call
    `client_memory` once and `invoices.core.memory.near_matches` per note instead. Empty
    when similar memory is off."""
    memory = client_memory([client_id]).get(client_id)
    if memory is None or memory.similar is None:
        return []
    return near_matches(notes, memory.similar, limit=limit)


# The model tier and the rule preview read memory under its first name (they are not changed
# with it): it now holds reviewers' decisions too.
approved_memory = client_memory


def reclassify_after_decision(
    *, client_id: int, normalized_notes: Iterable[str], entry_ids: Iterable[int] = ()
) -> ClassifySummary:
    """After a reviewer's decision, in its transaction: the client's entries it may change
    follow at once (section 2.3), and the classification triggers mark their drafts stale.

    Those are the entries of `entry_ids`, every unlocked entry of the client with one of the
    notes (memory comes before the model tier), and, with similar memory on, the client's
    entries still pending or decided by memory (a new decided note may decide them, or now
    disagree with what they matched). Entries the model decided on other notes follow at the
    next classification run (drafting runs one)."""
    affected = Q(normalized_notes__in=[n for n in normalized_notes if n]) | Q(
        id__in=list(entry_ids)
    )
    if similar_memory_threshold() is not None:
        affected |= (
            Q(classification__isnull=True)
            | Q(classification__needs_review=True)
            | Q(classification__tier=Classification.Tier.MEMORY)
        )
    return classify_entries(entries_to_classify(client_ids=[client_id]).filter(affected))


def classify_entries(
    entries: QuerySet[TimeEntry], *, config: Configuration | None = None
) -> ClassifySummary:
    """Classify `entries` (see `entries_to_classify`) and store each decision."""
    client_ids = list(entries.order_by().values_list("client_id", flat=True).distinct())
    summary = ClassifySummary()
    if not client_ids:
        return summary
    config = config or load_configuration(client_ids)
    id_by_key = config.category_ids
    key_by_id = {pk: key for key, pk in id_by_key.items()}
    memory = client_memory(client_ids)
    rules = {client_id: order_rules(config.rules, client_id) for client_id in client_ids}
    reason = model_tier_status()
    threshold = confidence_threshold()
    now = timezone.now()

    for chunk in _chunks(entries.order_by("id").values_list(*ENTRY_COLUMNS)):
        rows = []
        for values in chunk:
            entry = dict(zip(ENTRY_COLUMNS, values, strict=True))
            client_id = entry["client_id"]
            decision = classify(
                EntryFacts(
                    id=entry["id"],
                    client=client_id,
                    project=entry["project_id"],
                    project_billable=entry["project__billing"] != NON_BILLABLE,
                    task=entry["task"],
                    notes=entry["notes"],
                    normalized_notes=entry["normalized_notes"],
                    tracker_billable=entry["tracker_billable"],
                ),
                policy=config.policy(client_id),
                categories=config.categories,
                rules=rules[client_id],
                memory=memory.get(client_id) or ClientMemory(),
                manual=_manual_of(entry, key_by_id),
                model=_answer_of(entry, key_by_id),
                model_reason=reason,
                threshold=threshold,
            )
            stored = (
                id_by_key.get(decision.category) if decision.category else None,
                decision.description,
                decision.tier,
                decision.rule_id,
                decision.confidence,
                decision.billable,
                decision.billing_code,
                decision.needs_review,
                decision.reason[:300],
                decision.memory_note,
            )
            # Only what changed is written: a decision's reclassification of a client's
            # pending entries, or a re-run over a month, rewrites (and re-triggers) nothing
            # that stays as it was.
            if entry["classification__tier"] is None or _changed(entry, stored):
                rows.append((entry["id"], *stored, now))
            summary.entries += 1
            summary.by_tier[decision.tier] += 1
            summary.needs_review += decision.needs_review
        if not rows:
            continue
        with transaction.atomic():
            upsert_rows(
                Classification,
                ["entry_id", *_DECISION_ATTNAMES, "classified_at"],
                rows,
                unique="entry_id",
                update=[*_DECISION_ATTNAMES, "classified_at"],
            )
    return summary


NON_BILLABLE = Project.Billing.NON_BILLABLE  # as `Project.is_billable` reads it
_ATTNAMES = {field.name: field.attname for field in Classification._meta.concrete_fields}
_DECISION_ATTNAMES = [_ATTNAMES[name] for name in DECISION_FIELDS]
# What classifying an entry reads: its facts, and its stored decision (None throughout when it
# has no classification row yet: `tier` is never null on a row) with the reviewer's and the
# model's answers. Plain values: building model instances cost more than classifying.
_STORED = [f"classification__{name}" for name in _DECISION_ATTNAMES]
ENTRY_COLUMNS = (
    "id",
    "client_id",
    "project_id",
    "project__billing",
    "task",
    "notes",
    "normalized_notes",
    "tracker_billable",
    *_STORED,
    "classification__manual_category_id",
    "classification__manual_billable",
    "classification__manual_description",
    "classification__model_category_id",
    "classification__model_description",
    "classification__model_confidence",
    "classification__model_note",
)


Row = dict[str, Any]  # an entry's `ENTRY_COLUMNS`, by name


def _changed(entry: Row, stored: tuple[Any, ...]) -> bool:
    return any(entry[column] != value for column, value in zip(_STORED, stored, strict=True))


def _chunks(qs: QuerySet[TimeEntry, tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    # Keyset pagination keeps memory flat for 100k-entry months without a server-side cursor.
    last_id = 0
    while True:
        chunk = list(qs.filter(id__gt=last_id)[:CHUNK])
        if not chunk:
            return
        yield chunk
        if len(chunk) < CHUNK:
            return  # the last chunk: no query to find that nothing follows
        last_id = chunk[-1][0]


def _manual(existing: Classification | None, key_by_id: dict[int, str]) -> ManualDecision | None:
    """The reviewer's decision of a stored classification (a model instance)."""
    if existing is None:
        return None
    return _manual_of({f"classification__{k}": v for k, v in vars(existing).items()}, key_by_id)


def _model_answer(existing: Classification | None, key_by_id: dict[int, str]) -> ModelAnswer | None:
    """The model's answer of a stored classification (a model instance)."""
    if existing is None:
        return None
    return _answer_of({f"classification__{k}": v for k, v in vars(existing).items()}, key_by_id)


def _manual_of(entry: Row, key_by_id: dict[int, str]) -> ManualDecision | None:
    """The reviewer's decision, from an entry's row of `ENTRY_COLUMNS`."""
    if entry["classification__tier"] is None:
        return None
    category_id = entry["classification__manual_category_id"]
    return ManualDecision(
        category=key_by_id.get(category_id) if category_id else None,
        billable=entry["classification__manual_billable"],
        description=entry["classification__manual_description"],
    )


def _answer_of(entry: Row, key_by_id: dict[int, str]) -> ModelAnswer | None:
    """The model's validated answer, from an entry's row of `ENTRY_COLUMNS`."""
    category_id = entry["classification__model_category_id"]
    if entry["classification__tier"] is None or (
        category_id is None and not entry["classification__model_note"]
    ):
        return None
    return ModelAnswer(
        category=key_by_id.get(category_id) if category_id else None,
        description=entry["classification__model_description"],
        confidence=entry["classification__model_confidence"],
        note=entry["classification__model_note"],
    )
