"""Classifies time entries with the tiers of billing semantics section 2.

The deterministic tiers (manual, rules, memory) run here. The language-model tier is a separate
worker that stores validated answers in `Classification.model_*`; this service reads them as the
fourth tier, so re-running it never loses a model answer or a reviewer's decision.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from invoices.configuration import Configuration, load_configuration
from invoices.core.classify import (
    EntryFacts,
    ManualDecision,
    ModelAnswer,
    build_memory,
    classify,
    order_rules,
)
from invoices.models import Classification, InvoiceStatus
from timesheets.models import TimeEntry

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


def approved_memory(client_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """Per client: normalized notes -> category of entries on approved invoices (tier 3)."""
    rows = (
        Classification.objects.filter(
            entry__client_id__in=list(client_ids),
            entry__invoice_links__is_live=True,
            entry__invoice_links__invoice__status=InvoiceStatus.APPROVED,
            category__isnull=False,
        )
        .exclude(entry__normalized_notes="")
        .values_list("entry__client_id", "entry__normalized_notes", "category__key")
        .order_by("entry__client_id")
    )
    pairs: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for client_id, notes, key in rows.iterator(chunk_size=CHUNK):
        pairs[client_id].append((notes, key))
    return {client_id: build_memory(items) for client_id, items in pairs.items()}


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
    memory = approved_memory(client_ids)
    rules = {client_id: order_rules(config.rules, client_id) for client_id in client_ids}
    reason = model_tier_status()
    threshold = confidence_threshold()

    for chunk in _chunks(entries.select_related("project", "classification").order_by("id")):
        rows = []
        for entry in chunk:
            existing: Classification | None = getattr(entry, "classification", None)
            decision = classify(
                EntryFacts(
                    id=entry.id,
                    client=entry.client_id,
                    project=entry.project_id,
                    project_billable=entry.project.is_billable,
                    task=entry.task,
                    notes=entry.notes,
                    normalized_notes=entry.normalized_notes,
                    tracker_billable=entry.tracker_billable,
                ),
                policy=config.policy(entry.client_id),
                categories=config.categories,
                rules=rules[entry.client_id],
                memory=memory.get(entry.client_id, {}),
                manual=_manual(existing, key_by_id),
                model=_model_answer(existing, key_by_id),
                model_reason=reason,
                threshold=threshold,
            )
            rows.append(
                Classification(
                    entry_id=entry.id,
                    category_id=id_by_key.get(decision.category) if decision.category else None,
                    description=decision.description,
                    tier=decision.tier,
                    rule_id=decision.rule_id,
                    confidence=decision.confidence,
                    billable=decision.billable,
                    billing_code=decision.billing_code,
                    needs_review=decision.needs_review,
                    review_reason=decision.reason[:300],
                )
            )
            summary.entries += 1
            summary.by_tier[decision.tier] += 1
            summary.needs_review += decision.needs_review
        with transaction.atomic():
            Classification.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["entry"],
                update_fields=DECISION_FIELDS + ["classified_at"],
            )
    return summary


def _chunks(qs: QuerySet[TimeEntry]) -> Iterator[list[TimeEntry]]:
    # Keyset pagination keeps memory flat for 100k-entry months without a server-side cursor
    # (select_related of a reverse one-to-one needs a regular query).
    last_id = 0
    while True:
        chunk = list(qs.filter(id__gt=last_id)[:CHUNK])
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1].id


def _manual(existing: Classification | None, key_by_id: dict[int, str]) -> ManualDecision | None:
    if existing is None:
        return None
    return ManualDecision(
        category=key_by_id.get(existing.manual_category_id)
        if existing.manual_category_id
        else None,
        billable=existing.manual_billable,
        description=existing.manual_description,
    )


def _model_answer(existing: Classification | None, key_by_id: dict[int, str]) -> ModelAnswer | None:
    if existing is None or (existing.model_category_id is None and not existing.model_note):
        return None
    return ModelAnswer(
        category=key_by_id.get(existing.model_category_id) if existing.model_category_id else None,
        description=existing.model_description,
        confidence=existing.model_confidence,
        note=existing.model_note,
    )
