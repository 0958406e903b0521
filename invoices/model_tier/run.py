"""The synchronous run: the undecided entries of a scope, one client at a time, one request at
a time through the Messages API."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

from django.conf import settings

from integrations.claude import (
    REASON_UNAVAILABLE,
    ClaudeClassifier,
    ModelNotAuthorized,
    ModelRequestRejected,
    ModelUnavailable,
)
from invoices.classification import approved_memory, entries_to_classify
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
from invoices.model_tier.planning import PlannedRequest, one_by_one, plan_client
from invoices.model_tier.results import ModelTierError, ModelTierSummary
from invoices.model_tier.selection import classify_unclassified, client_lock, undecided_entries
from invoices.models import ModelRun
from timesheets.models import Client

REJECTED_REQUEST = "model request rejected"


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
    classify_unclassified(scope)
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
                store_no_note(plan.no_note, summary)
                touched: list[int] = []
                for request in plan.requests:
                    touched += ask_and_store(classifier, run, request, config, summary)
            rebuild_drafts(touched)
        status, error = ModelRun.Status.DONE, ""
    except ModelNotAuthorized as exc:
        error = str(exc)
        raise ModelTierError(f"the model API refused the configured key: {exc}") from exc
    finally:
        finish_run(run, status, error=error)
    return summary


def ask_and_store(
    classifier: ClaudeClassifier,
    run: ModelRun,
    request: PlannedRequest,
    config: Configuration,
    summary: ModelTierSummary,
) -> list[int]:
    """One request: ask, store, re-decide; when its answer fails the known-answer check, its
    notes are asked again one by one. Returns the ids of entries it touched."""
    started = time.monotonic()
    try:
        result = classifier.classify(request.prompt)
    except (ModelUnavailable, ModelRequestRejected) as exc:
        unavailable = isinstance(exc, ModelUnavailable)
        store_failure(
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
        store_failure(
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
    touched = store_answer(
        run,
        request,
        result,
        config,
        summary,
        batch=False,
        latency_ms=result.latency_ms,
        attempts=result.attempts,
    )
    if needs_one_by_one(request, result):
        for single in one_by_one(request):
            touched += ask_and_store(classifier, run, single, config, summary)
    return touched
