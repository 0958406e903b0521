"""The language-model tier (billing semantics 2.4): Claude reads the notes nobody else decided.

Which entries: those the deterministic tiers leave undecided (needs review, no manual, rule or
memory decision), not frozen on an approved invoice, that the model has not answered yet, or
whose last answer failed for a reason of the answer itself (model unavailable, cut off,
malformed, missing), or whose entry changed after it was asked.

How: per client, identical normalized notes are asked once; notes go in requests of
CLASSIFIER_BATCH_SIZE under opaque references, with known-answer items mixed in; an answer
that gets a known-answer item wrong decides nothing, and its notes are asked again one by one,
so a note that steers the model can only spoil its own answer (a note that reads like
instructions is asked alone from the start); the adapter validates every answer item. A validated
answer is stored in `Classification.model_*` only (never hours, dates, amounts, client or
project), then `classify_entries` re-decides those entries so tier 4 applies with the
confidence threshold, and drafts holding them are rebuilt. Every request is recorded
(`ModelRequest`) with tokens, cost, latency and attempts, and summed on its `ModelRun`.

Safe to run twice: a second run finds nothing left to ask, and a reviewer's decision is
never overwritten (rows are re-checked under lock when an answer is stored). Runs on one
client take turns (a PostgreSQL advisory lock), so two workers never ask the same notes.

Modules:

    selection.py       which entries are asked, enqueueing per client, the per-client lock
    planning.py        entries grouped by note and cut into requests (rules, examples)
    answers.py         answers and failures stored, counted on the run, drafts rebuilt
    pricing.py         what a request's tokens cost
    run.py             the synchronous run, one request at a time
    batch_api.py       the same through the Message Batches API
    model_settings.py  whether a model is configured, and the adapter's settings
    results.py         the run's summary and its one error
"""

from invoices.model_tier.answers import MODEL_FIELDS, NO_NOTE
from invoices.model_tier.batch_api import WAITING_FOR_BATCH, run_model_tier_batch_api
from invoices.model_tier.model_settings import claude_settings, model_configured
from invoices.model_tier.planning import (
    SUSPICIOUS,
    ClientPlan,
    NoteGroup,
    PlannedRequest,
    batch_secret,
    one_by_one,
    plan_client,
)
from invoices.model_tier.pricing import PRICES, ModelPrice, cost_usd, price_of
from invoices.model_tier.results import ModelTierError, ModelTierSummary
from invoices.model_tier.run import REJECTED_REQUEST, run_model_tier
from invoices.model_tier.selection import (
    LOCK_NAMESPACE,
    TASK,
    TASK_GROUP,
    client_lock,
    enqueue_model_tier,
    undecided_entries,
)

__all__ = [
    "LOCK_NAMESPACE",
    "MODEL_FIELDS",
    "NO_NOTE",
    "PRICES",
    "REJECTED_REQUEST",
    "SUSPICIOUS",
    "TASK",
    "TASK_GROUP",
    "WAITING_FOR_BATCH",
    "ClientPlan",
    "ModelPrice",
    "ModelTierError",
    "ModelTierSummary",
    "NoteGroup",
    "PlannedRequest",
    "batch_secret",
    "claude_settings",
    "client_lock",
    "cost_usd",
    "enqueue_model_tier",
    "model_configured",
    "one_by_one",
    "plan_client",
    "price_of",
    "run_model_tier",
    "run_model_tier_batch_api",
    "undecided_entries",
]
