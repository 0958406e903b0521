"""Storing the model's answers (and its failures) on the entries' classifications, re-deciding
those entries, counting each request on its run, and rebuilding the drafts that hold them.
Rows are re-checked under lock, so a reviewer's decision made meanwhile always wins."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integrations.claude import REASON_REASK, REASON_UNAVAILABLE, ParsedAnswer, Usage
from invoices.classification import classify_entries, entries_to_classify
from invoices.configuration import Configuration
from invoices.core.classify import TIER_LLM
from invoices.core.rounding import round_confidence
from invoices.drafting import rebuild_invoice
from invoices.model_tier.planning import PlannedRequest
from invoices.model_tier.pricing import cost_usd
from invoices.model_tier.results import ModelTierSummary
from invoices.models import Classification, Invoice, InvoiceStatus, ModelRequest, ModelRun

MODEL_FIELDS = [
    "model_category",
    "model_description",
    "model_confidence",
    "model_note",
    "model_request",
]
NO_NOTE = "the entry has no note to classify"


def _locked_rows(entry_ids: list[int]) -> dict[int, Classification]:
    """The classifications still open to the model, locked: a reviewer's decision made while
    the request was in flight wins, and so does an approval that froze the entry."""
    rows = Classification.objects.select_for_update(of=("self",)).filter(
        entry_id__in=entry_ids, manual_category__isnull=True, entry__locked=False
    )
    return {row.entry_id: row for row in rows}


def needs_one_by_one(request: PlannedRequest, parsed: ParsedAnswer) -> bool:
    """A shared request whose answer failed the known-answer check: ask its notes alone."""
    return bool(parsed.canary_failure) and len(request.groups) > 1


def store_answer(
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
    if needs_one_by_one(request, parsed):
        _store_screened(run, request, parsed, summary, cost, latency_ms, attempts)
        return []
    problems = [f"{ref}: {reason}" for ref, reason in sorted(parsed.rejections.items())]
    if parsed.canary_failure:
        problems.insert(0, f"known-answer check failed: {parsed.canary_failure}")
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


def _store_screened(
    run: ModelRun,
    request: PlannedRequest,
    parsed: ParsedAnswer,
    summary: ModelTierSummary,
    cost: Decimal,
    latency_ms: int,
    attempts: int,
) -> None:
    """An answer that failed the known-answer check: recorded (its tokens were paid for), none
    of it stored as a decision. Its entries wait for the one-by-one requests, with a reason a
    later run retries should this one stop first."""
    with transaction.atomic():
        stored = ModelRequest.objects.create(
            run=run,
            client_id=request.client_id,
            status=ModelRequest.Status.INVALID,
            entries=len(request.entry_ids),
            distinct_notes=len(request.groups),
            input_tokens=parsed.usage.input_tokens,
            output_tokens=parsed.usage.output_tokens,
            cache_read_tokens=parsed.usage.cache_read_tokens,
            cache_write_tokens=parsed.usage.cache_write_tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
            attempts=attempts,
            error=f"known-answer check failed: {parsed.canary_failure}; "
            "every note of the request asked again on its own",
        )
        rows = _locked_rows(request.entry_ids)
        for row in rows.values():
            row.model_category_id, row.model_description, row.model_confidence = None, "", None
            row.model_note, row.model_request = REASON_REASK, stored
        Classification.objects.bulk_update(rows.values(), MODEL_FIELDS)
        classify_entries(entries_to_classify(entry_ids=list(rows)))
        # The entries are counted by the requests that answer them one by one.
        _count(run, summary, request, 0, 0, 0, parsed.usage, cost, entries=False)


def store_failure(
    run: ModelRun,
    request: PlannedRequest,
    config: Configuration,
    summary: ModelTierSummary,
    *,
    note: str,
    error: str,
    attempts: int,
    latency_ms: int,
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


def store_no_note(entry_ids: list[int], summary: ModelTierSummary) -> None:
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
    *,
    entries: bool = True,
) -> None:
    """Add one request to the run (in the database, so a run cut short still adds up)."""
    entry_count = len(request.entry_ids) if entries else 0
    summary.entries += entry_count
    summary.distinct_notes += len(request.groups) if entries else 0
    summary.requests += 1
    summary.decided += decided
    summary.needs_review += needs_review
    summary.unavailable += unavailable
    summary.usage += usage
    summary.cost_usd += cost
    ModelRun.objects.filter(pk=run.pk).update(
        entries=F("entries") + entry_count,
        decided=F("decided") + decided,
        abstained=F("abstained") + needs_review,
        requests=F("requests") + 1,
        input_tokens=F("input_tokens") + usage.input_tokens,
        output_tokens=F("output_tokens") + usage.output_tokens,
        cache_read_tokens=F("cache_read_tokens") + usage.cache_read_tokens,
        cache_write_tokens=F("cache_write_tokens") + usage.cache_write_tokens,
        cost_usd=F("cost_usd") + cost,
    )


def finish_run(run: ModelRun | None, status: str, *, error: str = "") -> None:
    if run is not None:
        ModelRun.objects.filter(pk=run.pk).update(
            status=status, finished_at=timezone.now(), error=error[:2000]
        )


def rebuild_drafts(entry_ids: list[int]) -> None:
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
