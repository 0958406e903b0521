"""The language-model tier (billing semantics 2.4): Claude reads the notes nobody else decided.

Which entries: those the deterministic tiers leave undecided (needs review, no manual, rule or
memory decision), not frozen on an approved invoice, that the model has not answered yet, or
whose last answer failed for a reason of the answer itself (model unavailable, cut off,
malformed, missing), or whose entry changed after it was asked.

How: per client, identical normalized notes are asked once; notes go in requests of
CLASSIFIER_BATCH_SIZE (a note that reads like instructions to the model goes alone, so it
can only ever affect its own entries); the adapter validates every answer item. A validated
answer is stored in `Classification.model_*` only (never hours, dates, amounts, client or
project), then `classify_entries` re-decides those entries so tier 4 applies with the
confidence threshold, and drafts holding them are rebuilt. Every request is recorded
(`ModelRequest`) with tokens, cost, latency and attempts, and summed on its `ModelRun`.

Safe to run twice: a second run finds nothing left to ask, and a reviewer's decision is
never overwritten (rows are re-checked under lock when an answer is stored). Runs on one
client take turns (a PostgreSQL advisory lock), so two workers never ask the same notes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from integrations.claude import (
    REASON_UNAVAILABLE,
    RETRYABLE_REASONS,
    BatchItemResult,
    CategoryOption,
    ClassificationPrompt,
    ClaudeClassifier,
    ClaudeError,
    ClaudeSettings,
    Example,
    ModelNotAuthorized,
    ModelRequestRejected,
    ModelUnavailable,
    NoteItem,
    ParsedAnswer,
    Usage,
)
from invoices.classification import approved_memory, classify_entries, entries_to_classify
from invoices.configuration import Configuration, load_configuration
from invoices.core.classify import AMBIGUOUS, TIER_LLM, TIER_NONE
from invoices.core.rounding import round_confidence, round_half_up
from invoices.drafting import rebuild_invoice
from invoices.models import (
    Classification,
    ClassificationRule,
    Invoice,
    InvoiceStatus,
    ModelRequest,
    ModelRun,
)
from timesheets.models import Client, TimeEntry

log = logging.getLogger(__name__)

MODEL_FIELDS = [
    "model_category",
    "model_description",
    "model_confidence",
    "model_note",
    "model_request",
]
NO_NOTE = "the entry has no note to classify"
WAITING_FOR_BATCH = "waiting for Message Batch (model run {run})"
REJECTED_REQUEST = "model request rejected"
# Advisory-lock namespace of the model tier (any constant; the second key is the client id).
LOCK_NAMESPACE = 0x4C4C4D

# A note that reads like instructions to the model is asked on its own: whatever it makes the
# model do can then only touch that note's entries.
SUSPICIOUS = re.compile(
    r"(?i)\b(ignore|disregard|forget)\b.{0,30}\b(instructions?|rules?|prompt)\b"
    r"|\bsystem\s*(prompt|:)|\byou are (now )?(an?|the)\b|\bclassify (every|all)\b"
    r"|\bset (the )?(hours?|rates?|amounts?|category)\b|</?\s*(system|instructions?|entries)\s*>"
)


# --- Prices -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_write: Decimal  # 5-minute cache writes (the only TTL this tier uses)
    cache_read: Decimal


def _price(inp: str, out: str, write: str | None = None, read: str | None = None) -> ModelPrice:
    i = Decimal(inp)
    return ModelPrice(
        i,
        Decimal(out),
        Decimal(write) if write else i * Decimal("1.25"),
        Decimal(read) if read else i * Decimal("0.1"),
    )


# api-notes 5.9 (docs snapshot, late 2026). Haiku 5.5 is priced at its <= 100k-token prompt
# tier: a classification request is a few thousand tokens.
PRICES: dict[str, ModelPrice] = {
    "claude-haiku-5-5": _price("0.10", "0.50", "0.125", "0.01"),
    "claude-sonnet-5-5": _price("2", "10", read="0.10"),
    "claude-opus-5-5": _price("4", "20", read="0.20"),
    "claude-fable-5-2": _price("8", "40"),
    "claude-fable-5-1": _price("10", "50"),
    "claude-sonnet-5": _price("2", "10"),
    "claude-opus-5": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-8": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-7": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-6": _price("5", "25", "6.25", "0.50"),
    "claude-opus-4-5": _price("5", "25", "6.25", "0.50"),
    "claude-sonnet-4-6": _price("3", "15", "3.75", "0.30"),
    "claude-sonnet-4-5": _price("3", "15", "3.75", "0.30"),
    "claude-haiku-4-5": _price("1", "5", "1.25", "0.10"),
}
BATCH_DISCOUNT = Decimal("0.5")
MILLION = Decimal(1_000_000)
COST_PLACES = 6


def price_of(model: str) -> ModelPrice | None:
    """The price of a model id, dated snapshots included (claude-haiku-4-5-20251001)."""
    return PRICES.get(model) or PRICES.get(re.sub(r"-\d{8}$", "", model))


def cost_usd(*, model: str, usage: Usage, batch: bool = False) -> Decimal:
    """What `usage` costs. The Message Batches API halves every token price (caching still
    applies inside batches). An unknown model costs 0 here and is logged."""
    price = price_of(model)
    if price is None:
        log.warning("no price known for model %s: its cost is recorded as 0", model)
        return Decimal(0)
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    ) / MILLION
    if batch:
        total *= BATCH_DISCOUNT
    return round_half_up(total, COST_PLACES)


# --- Errors and results -------------------------------------------------------------------


class ModelTierError(Exception):
    """The run stopped: the model cannot be used as configured (e.g. the key is refused)."""


@dataclass
class ModelTierSummary:
    skipped: str = ""
    run_id: int | None = None
    entries: int = 0
    distinct_notes: int = 0
    requests: int = 0
    decided: int = 0
    needs_review: int = 0
    unavailable: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    batch_id: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"model tier skipped: {self.skipped}"
        if not self.entries:
            return "model tier: nothing to ask"
        u = self.usage
        return (
            f"model tier: {self.entries} entries ({self.distinct_notes} distinct notes) in "
            f"{self.requests} request(s): {self.decided} decided, {self.needs_review} need "
            f"review ({self.unavailable} model unavailable); tokens: {u.input_tokens} input, "
            f"{u.cache_read_tokens} cache read, {u.cache_write_tokens} cache write, "
            f"{u.output_tokens} output; ${self.cost_usd}"
        )


# --- Configuration ------------------------------------------------------------------------


def model_configured() -> bool:
    return bool(settings.ANTHROPIC_API_KEY)


def claude_settings() -> ClaudeSettings:
    return ClaudeSettings(
        api_key=settings.ANTHROPIC_API_KEY,
        model=settings.CLASSIFIER_MODEL,
        base_url=settings.ANTHROPIC_BASE_URL,
        max_retries=settings.ANTHROPIC_MAX_RETRIES,
        timeout_seconds=settings.ANTHROPIC_TIMEOUT,
    )


# --- Which entries ------------------------------------------------------------------------


def undecided_entries(scope: QuerySet[TimeEntry]) -> QuerySet[TimeEntry]:
    """The entries of `scope` (see `entries_to_classify`) the model tier should ask about."""
    not_asked = Q(classification__model_request__isnull=True, classification__model_note="")
    retry = Q()
    for reason in RETRYABLE_REASONS:
        retry |= Q(classification__model_note__startswith=reason)
    changed_since_asked = Q(
        classification__model_request__isnull=False,
        updated_at__gt=F("classification__model_request__created_at"),
    )
    undecided = Q(classification__needs_review=True, classification__tier=TIER_NONE)
    return scope.filter(
        (undecided & (not_asked | retry | changed_since_asked))
        | (Q(classification__tier=TIER_LLM) & changed_since_asked),
        locked=False,
        classification__manual_category__isnull=True,
    )


# --- Enqueueing -----------------------------------------------------------------------------

TASK = "invoices.tasks.classify_with_model"
TASK_GROUP = "model-tier"
ENQUEUE_CHUNK = 5000


def enqueue_model_tier(*, entry_ids: Iterable[int], trigger: str = "import") -> int:
    """After the caller's transaction commits, enqueue one model-tier task per client that
    has something to ask among `entry_ids` (one task per client, so the cluster's workers ask
    for several clients at once). Each task covers all of its client's undecided entries, so
    an import also retries what an earlier outage left "model unavailable". Returns the number
    of tasks planned; does nothing without ANTHROPIC_API_KEY."""
    if not model_configured():
        return 0
    ids = sorted(entry_ids)
    client_ids: set[int] = set()
    for i in range(0, len(ids), ENQUEUE_CHUNK):
        chunk = TimeEntry.objects.filter(id__in=ids[i : i + ENQUEUE_CHUNK])
        client_ids.update(undecided_entries(chunk).values_list("client_id", flat=True))
    for client_id in sorted(client_ids):
        transaction.on_commit(
            partial(
                async_task,
                TASK,
                client_id=client_id,
                trigger=trigger,
                group=TASK_GROUP,
                task_name=f"model tier: client {client_id} ({trigger})",
            )
        )
    return len(client_ids)


# --- Planning requests --------------------------------------------------------------------


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


# --- The synchronous run ------------------------------------------------------------------


def run_model_tier(
    *,
    entry_ids: Iterable[int] | None = None,
    client_ids: Iterable[int] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    trigger: str = "command",
    batch_size: int | None = None,
    dedupe: bool = True,
    classifier: ClaudeClassifier | None = None,
) -> ModelTierSummary:
    """Ask the model about the undecided entries of the scope, one client at a time.

    Without ANTHROPIC_API_KEY nothing happens: entries keep "no model configured". Raises
    ModelTierError (after recording the run) when the API refuses the key."""
    if not model_configured():
        return ModelTierSummary(skipped="no model configured (ANTHROPIC_API_KEY is not set)")
    scope = entries_to_classify(entry_ids=entry_ids, client_ids=client_ids, start=start, end=end)
    _classify_unclassified(scope)
    ids = sorted(set(undecided_entries(scope).values_list("client_id", flat=True)))
    summary = ModelTierSummary()
    if not ids:
        return summary
    classifier = classifier or ClaudeClassifier(claude_settings())
    config = load_configuration(ids)
    memory = approved_memory(ids)
    run: ModelRun | None = None
    # Whatever stops the run (a refused key, the worker's timeout), the run row says so.
    status, error = ModelRun.Status.FAILED, "the run stopped before it finished"
    try:
        for client in Client.objects.filter(id__in=ids).order_by("id"):
            with client_lock(client.id):
                # Selected under the lock: a run that held it before us has decided its part.
                entries = list(
                    undecided_entries(scope.filter(client_id=client.id)).only(
                        "id", "notes", "normalized_notes"
                    )
                )
                if not entries:
                    continue
                plan = plan_client(
                    client,
                    entries,
                    config=config,
                    memory=memory.get(client.id, {}),
                    batch_size=batch_size or settings.CLASSIFIER_BATCH_SIZE,
                    dedupe=dedupe,
                )
                if run is None:
                    run = ModelRun.objects.create(trigger=trigger, model=classifier.config.model)
                    summary.run_id = run.id
                _store_no_note(plan.no_note, summary)
                touched: list[int] = []
                for request in plan.requests:
                    touched += _ask(classifier, run, request, config, summary)
            _rebuild_drafts(touched)
        status, error = ModelRun.Status.DONE, ""
    except ModelNotAuthorized as exc:
        error = str(exc)
        raise ModelTierError(f"the model API refused the configured key: {exc}") from exc
    finally:
        _finish_run(run, status, error=error)
    return summary


def _classify_unclassified(scope: QuerySet[TimeEntry]) -> None:
    """Entries never classified have no deterministic decision yet: make it first."""
    missing = scope.filter(classification__isnull=True)
    if missing.exists():
        classify_entries(missing)


def _ask(
    classifier: ClaudeClassifier,
    run: ModelRun,
    request: PlannedRequest,
    config: Configuration,
    summary: ModelTierSummary,
) -> list[int]:
    """One request: ask, store, re-decide. Returns the ids of entries it touched."""
    started = time.monotonic()
    try:
        result = classifier.classify(request.prompt)
    except (ModelUnavailable, ModelRequestRejected) as exc:
        unavailable = isinstance(exc, ModelUnavailable)
        _store_failure(
            run,
            request,
            config,
            summary,
            note=REASON_UNAVAILABLE if unavailable else f"{REJECTED_REQUEST}: {exc}",
            error=str(exc),
            attempts=(classifier.config.max_retries + 1) if unavailable else 1,
            latency_ms=int((time.monotonic() - started) * 1000),
        )
        return []
    except ModelNotAuthorized as exc:
        _store_failure(
            run,
            request,
            config,
            summary,
            note=REASON_UNAVAILABLE,
            error=str(exc),
            attempts=1,
            latency_ms=int((time.monotonic() - started) * 1000),
        )
        raise
    return _store_answer(
        run,
        request,
        result,
        config,
        summary,
        batch=False,
        latency_ms=result.latency_ms,
        attempts=result.attempts,
    )


# --- Storing answers ----------------------------------------------------------------------


def _locked_rows(entry_ids: list[int]) -> dict[int, Classification]:
    """The classifications still open to the model, locked: a reviewer's decision made while
    the request was in flight wins, and so does an approval that froze the entry."""
    rows = Classification.objects.select_for_update(of=("self",)).filter(
        entry_id__in=entry_ids, manual_category__isnull=True, entry__locked=False
    )
    return {row.entry_id: row for row in rows}


def _store_answer(
    run: ModelRun,
    request: PlannedRequest,
    parsed: ParsedAnswer,
    config: Configuration,
    summary: ModelTierSummary,
    *,
    batch: bool,
    latency_ms: int,
    attempts: int,
) -> list[int]:
    cost = cost_usd(model=run.model, usage=parsed.usage, batch=batch)
    problems = [f"{ref}: {reason}" for ref, reason in sorted(parsed.rejections.items())]
    if parsed.unknown_refs:
        problems.append("unknown entry refs in the answer: " + ", ".join(parsed.unknown_refs))
    with transaction.atomic():
        stored = ModelRequest.objects.create(
            run=run,
            client_id=request.client_id,
            status=parsed.status,
            entries=len(request.entry_ids),
            distinct_notes=len(request.groups),
            input_tokens=parsed.usage.input_tokens,
            output_tokens=parsed.usage.output_tokens,
            cache_read_tokens=parsed.usage.cache_read_tokens,
            cache_write_tokens=parsed.usage.cache_write_tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
            attempts=attempts,
            error="\n".join(problems),
        )
        rows = _locked_rows(request.entry_ids)
        for ref, group in request.groups.items():
            answer = parsed.answers.get(ref)
            for entry_id in group.entry_ids:
                row = rows.get(entry_id)
                if row is None:
                    continue
                if answer is not None:
                    row.model_category_id = (
                        config.category_ids[answer.category] if answer.category else None
                    )
                    row.model_description = answer.description
                    row.model_confidence = round_confidence(answer.confidence)
                    row.model_note = answer.note
                else:
                    row.model_category_id, row.model_description = None, ""
                    row.model_confidence = None
                    row.model_note = parsed.rejections.get(ref, "no answer")[:300]
                row.model_request = stored
        Classification.objects.bulk_update(rows.values(), MODEL_FIELDS)
        decided = classify_entries(entries_to_classify(entry_ids=list(rows)), config=config)
        _count(
            run,
            summary,
            request,
            decided.by_tier.get(TIER_LLM, 0),
            decided.needs_review,
            0,
            parsed.usage,
            cost,
        )
    return list(rows)


def _store_failure(
    run: ModelRun,
    request: PlannedRequest,
    config: Configuration,
    summary: ModelTierSummary,
    *,
    note: str,
    error: str,
    attempts: int,
    latency_ms: int,
    batch: bool = False,
) -> None:
    """No answer at all: the entries stay needs review with `note`; a later run asks again
    when the note is "model unavailable"."""
    with transaction.atomic():
        stored = ModelRequest.objects.create(
            run=run,
            client_id=request.client_id,
            status=ModelRequest.Status.FAILED,
            entries=len(request.entry_ids),
            distinct_notes=len(request.groups),
            latency_ms=latency_ms,
            attempts=attempts,
            error=error[:2000],
        )
        rows = _locked_rows(request.entry_ids)
        for row in rows.values():
            row.model_category_id, row.model_description, row.model_confidence = None, "", None
            row.model_note, row.model_request = note[:300], stored
        Classification.objects.bulk_update(rows.values(), MODEL_FIELDS)
        decided = classify_entries(entries_to_classify(entry_ids=list(rows)), config=config)
        _count(
            run,
            summary,
            request,
            decided.by_tier.get(TIER_LLM, 0),
            decided.needs_review,
            len(rows) if note == REASON_UNAVAILABLE else 0,
            Usage(),
            Decimal(0),
        )


def _store_no_note(entry_ids: list[int], summary: ModelTierSummary) -> None:
    if entry_ids:
        Classification.objects.filter(entry_id__in=entry_ids, manual_category__isnull=True).update(
            model_note=NO_NOTE
        )
        classify_entries(entries_to_classify(entry_ids=entry_ids))
        summary.entries += len(entry_ids)
        summary.needs_review += len(entry_ids)


def _count(
    run: ModelRun,
    summary: ModelTierSummary,
    request: PlannedRequest,
    decided: int,
    needs_review: int,
    unavailable: int,
    usage: Usage,
    cost: Decimal,
) -> None:
    """Add one request to the run (in the database, so a run cut short still adds up)."""
    summary.entries += len(request.entry_ids)
    summary.distinct_notes += len(request.groups)
    summary.requests += 1
    summary.decided += decided
    summary.needs_review += needs_review
    summary.unavailable += unavailable
    summary.usage += usage
    summary.cost_usd += cost
    ModelRun.objects.filter(pk=run.pk).update(
        entries=F("entries") + len(request.entry_ids),
        decided=F("decided") + decided,
        abstained=F("abstained") + needs_review,
        requests=F("requests") + 1,
        input_tokens=F("input_tokens") + usage.input_tokens,
        output_tokens=F("output_tokens") + usage.output_tokens,
        cache_read_tokens=F("cache_read_tokens") + usage.cache_read_tokens,
        cache_write_tokens=F("cache_write_tokens") + usage.cache_write_tokens,
        cost_usd=F("cost_usd") + cost,
    )


def _finish_run(run: ModelRun | None, status: str, *, error: str = "") -> None:
    if run is not None:
        ModelRun.objects.filter(pk=run.pk).update(
            status=status, finished_at=timezone.now(), error=error[:2000]
        )


def _rebuild_drafts(entry_ids: list[int]) -> None:
    """Drafts holding entries the model just decided are rebuilt, so they show them priced."""
    if not entry_ids:
        return
    drafts = Invoice.objects.filter(
        status=InvoiceStatus.DRAFT,
        entry_links__is_live=True,
        entry_links__entry_id__in=entry_ids,
    ).distinct()
    for draft in drafts:
        rebuild_invoice(draft)


@contextmanager
def client_lock(client_id: int) -> Iterator[None]:
    """One model-tier pass per client at a time (session-level advisory lock: it is held
    across the HTTP calls without holding a transaction open)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, client_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, client_id])


# --- The Message Batches API ------------------------------------------------------------


def run_model_tier_batch_api(
    *,
    client_ids: Iterable[int] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    poll_seconds: float | None = None,
    classifier: ClaudeClassifier | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[object], None] | None = None,
) -> ModelTierSummary:
    """The same tier through the Message Batches API (half price, results within 24 h):
    submit every request as one batch, poll until it ends, apply the results.

    Interrupting it is safe: the batch's entries are marked as waiting for it, and the next
    call first finishes any batch an earlier call left running before submitting a new one.
    Results are applied once, in one transaction, under a lock on the run."""
    if not model_configured():
        return ModelTierSummary(skipped="no model configured (ANTHROPIC_API_KEY is not set)")
    classifier = classifier or ClaudeClassifier(claude_settings())
    poll = settings.CLASSIFIER_BATCH_POLL_SECONDS if poll_seconds is None else poll_seconds
    summary = ModelTierSummary()
    for earlier in ModelRun.objects.filter(trigger="batch-api", status=ModelRun.Status.RUNNING):
        _finish_batch(earlier, classifier, poll, sleep, on_poll, ModelTierSummary())

    scope = entries_to_classify(client_ids=client_ids, start=start, end=end)
    _classify_unclassified(scope)
    ids = sorted(set(undecided_entries(scope).values_list("client_id", flat=True)))
    if not ids:
        return summary
    run = ModelRun.objects.create(trigger="batch-api", model=classifier.config.model)
    summary.run_id = run.id
    marker = WAITING_FOR_BATCH.format(run=run.id)
    requests = _plan_batch(run, scope, ids, marker)
    if not requests:
        _finish_run(run, ModelRun.Status.DONE)
        return summary
    try:
        batch_id = classifier.create_batch((r.custom_id, r.prompt) for r in requests)
    except ClaudeError as exc:
        _release(run, marker, note=REASON_UNAVAILABLE, error=str(exc))
        if isinstance(exc, ModelNotAuthorized):
            raise ModelTierError(f"the model API refused the configured key: {exc}") from exc
        summary.unavailable = sum(len(r.entry_ids) for r in requests)
        return summary
    ModelRun.objects.filter(pk=run.pk).update(batch_id=batch_id)
    run.batch_id = batch_id
    summary.batch_id = batch_id
    _finish_batch(run, classifier, poll, sleep, on_poll, summary)
    return summary


def _plan_batch(
    run: ModelRun, scope: QuerySet[TimeEntry], client_ids: list[int], marker: str
) -> list[PlannedRequest]:
    """Plan every client's requests and mark their entries as waiting for this run."""
    requests: list[PlannedRequest] = []
    for client in Client.objects.filter(id__in=client_ids).order_by("id"):
        with client_lock(client.id), transaction.atomic():
            entries = list(
                undecided_entries(scope.filter(client_id=client.id)).only(
                    "id", "notes", "normalized_notes"
                )
            )
            plan = _batch_plan_for(client, entries)
            _store_no_note(plan.no_note, ModelTierSummary())
            ids = [i for r in plan.requests for i in r.entry_ids]
            Classification.objects.filter(entry_id__in=ids).update(model_note=marker)
            requests += plan.requests
    return requests


def _batch_plan_for(client: Client, entries: list[TimeEntry]) -> ClientPlan:
    config = load_configuration([client.id])
    return plan_client(
        client,
        entries,
        config=config,
        memory=approved_memory([client.id]).get(client.id, {}),
        batch_size=settings.CLASSIFIER_BATCH_SIZE,
    )


def _waiting_plans(run: ModelRun, marker: str) -> list[PlannedRequest]:
    """The run's requests, planned again from the entries marked as waiting for it: planning
    is deterministic, so this gives the custom ids and items that were submitted."""
    waiting = TimeEntry.objects.filter(classification__model_note=marker)
    plans: list[PlannedRequest] = []
    by_client: dict[int, list[TimeEntry]] = defaultdict(list)
    for entry in waiting.only("id", "client_id", "notes", "normalized_notes"):
        by_client[entry.client_id].append(entry)
    for client in Client.objects.filter(id__in=by_client).order_by("id"):
        plans += _batch_plan_for(client, by_client[client.id]).requests
    return plans


def _finish_batch(
    run: ModelRun,
    classifier: ClaudeClassifier,
    poll: float,
    sleep: Callable[[float], None],
    on_poll: Callable[[object], None] | None,
    summary: ModelTierSummary,
) -> None:
    marker = WAITING_FOR_BATCH.format(run=run.id)
    if not run.batch_id:
        # Cut short between planning and submitting: nothing was sent.
        _release(run, marker, note=REASON_UNAVAILABLE, error="the batch was never submitted")
        return
    try:
        classifier.wait_for_batch(run.batch_id, poll_seconds=poll, sleep=sleep, on_poll=on_poll)
    except ClaudeError as exc:
        # Still running remotely, or unreachable: leave the run for the next call.
        log.warning("Message Batch %s of run %s: %s", run.batch_id, run.id, exc)
        return
    plans = {p.custom_id: p for p in _waiting_plans(run, marker)}
    results = classifier.batch_results(run.batch_id, {k: p.prompt for k, p in plans.items()})
    config = load_configuration(sorted({p.client_id for p in plans.values()}))
    touched: list[int] = []
    with transaction.atomic():
        current = ModelRun.objects.select_for_update().get(pk=run.pk)
        if current.status != ModelRun.Status.RUNNING:
            return  # another call applied it
        for item in results:
            touched += _apply_batch_item(current, plans[item.custom_id], item, config, summary)
        _release(current, marker, note=REASON_UNAVAILABLE, error="")
        _finish_run(current, ModelRun.Status.DONE)
    _rebuild_drafts(touched)


def _apply_batch_item(
    run: ModelRun,
    plan: PlannedRequest,
    item: BatchItemResult,
    config: Configuration,
    summary: ModelTierSummary,
) -> list[int]:
    if item.answer is not None:
        return _store_answer(
            run, plan, item.answer, config, summary, batch=True, latency_ms=0, attempts=1
        )
    _store_failure(
        run,
        plan,
        config,
        summary,
        note=REASON_UNAVAILABLE,
        error=f"batch result {item.failure}",
        attempts=1,
        latency_ms=0,
        batch=True,
    )
    return []


def _release(run: ModelRun, marker: str, *, note: str, error: str) -> None:
    """Entries still marked as waiting for `run` (no result came for them) go back to
    `note`; with an error the run is closed as failed."""
    waiting = Classification.objects.filter(model_note=marker)
    ids = list(waiting.values_list("entry_id", flat=True))
    if ids:
        waiting.update(model_note=note)
        classify_entries(entries_to_classify(entry_ids=ids))
    if error:
        _finish_run(run, ModelRun.Status.FAILED, error=error)
