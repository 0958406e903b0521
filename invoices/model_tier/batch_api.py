"""The model tier through the Message Batches API (half price, results within 24 h): every
request submitted as one batch, polled until it ends, its results applied once. A request whose
answer failed the known-answer check has its notes asked again one by one through the Messages
API once the batch is applied."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from integrations.claude import (
    REASON_UNAVAILABLE,
    BatchItemResult,
    ClaudeClassifier,
    ClaudeError,
    ModelNotAuthorized,
)
from invoices.classification import approved_memory, classify_entries, entries_to_classify
from invoices.configuration import Configuration, load_configuration
from invoices.model_tier.answers import (
    finish_run,
    needs_one_by_one,
    rebuild_drafts,
    store_answer,
    store_failure,
    store_no_note,
)
from invoices.model_tier.model_settings import claude_settings, model_configured
from invoices.model_tier.planning import (
    ClientPlan,
    PlannedRequest,
    batch_secret,
    one_by_one,
    plan_client,
)
from invoices.model_tier.results import ModelTierError, ModelTierSummary
from invoices.model_tier.run import ask_and_store
from invoices.model_tier.selection import classify_unclassified, client_lock, undecided_entries
from invoices.models import Classification, ModelRun
from timesheets.models import Client, TimeEntry

# The package's logger: records are named invoices.model_tier whichever module logs them.
log = logging.getLogger(__package__)

WAITING_FOR_BATCH = "waiting for Message Batch (model run {run})"


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
    classify_unclassified(scope)
    ids = sorted(set(undecided_entries(scope).values_list("client_id", flat=True)))
    if not ids:
        return summary
    run = ModelRun.objects.create(trigger="batch-api", model=classifier.config.model)
    summary.run_id = run.id
    marker = WAITING_FOR_BATCH.format(run=run.id)
    requests = _plan_batch(run, scope, ids, marker)
    if not requests:
        finish_run(run, ModelRun.Status.DONE)
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
            plan = _batch_plan_for(run, client, entries)
            store_no_note(plan.no_note, ModelTierSummary())
            ids = [i for r in plan.requests for i in r.entry_ids]
            Classification.objects.filter(entry_id__in=ids).update(model_note=marker)
            requests += plan.requests
    return requests


def _batch_plan_for(run: ModelRun, client: Client, entries: list[TimeEntry]) -> ClientPlan:
    config = load_configuration([client.id])
    return plan_client(
        client,
        entries,
        config=config,
        memory=approved_memory([client.id]).get(client.id, {}),
        batch_size=settings.CLASSIFIER_BATCH_SIZE,
        secret=batch_secret(run.id),
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
        plans += _batch_plan_for(run, client, by_client[client.id]).requests
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
    screened: list[PlannedRequest] = []
    with transaction.atomic():
        current = ModelRun.objects.select_for_update().get(pk=run.pk)
        if current.status != ModelRun.Status.RUNNING:
            return  # another call applied it
        for item in results:
            plan = plans[item.custom_id]
            touched += _apply_batch_item(current, plan, item, config, summary)
            if item.answer is not None and needs_one_by_one(plan, item.answer):
                screened.append(plan)
        _release(current, marker, note=REASON_UNAVAILABLE, error="")
        finish_run(current, ModelRun.Status.DONE)
    # After the commit, outside the run's lock: these are ordinary Messages API calls. A run
    # stopped here leaves those entries with a reason the next run retries.
    try:
        for plan in screened:
            for single in one_by_one(plan):
                touched += ask_and_store(classifier, current, single, config, summary)
    except ModelNotAuthorized as exc:
        raise ModelTierError(f"the model API refused the configured key: {exc}") from exc
    finally:
        rebuild_drafts(touched)


def _apply_batch_item(
    run: ModelRun,
    plan: PlannedRequest,
    item: BatchItemResult,
    config: Configuration,
    summary: ModelTierSummary,
) -> list[int]:
    if item.answer is not None:
        return store_answer(
            run, plan, item.answer, config, summary, batch=True, latency_ms=0, attempts=1
        )
    store_failure(
        run,
        plan,
        config,
        summary,
        note=REASON_UNAVAILABLE,
        error=f"batch result {item.failure}",
        attempts=1,
        latency_ms=0,
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
        finish_run(run, ModelRun.Status.FAILED, error=error)
