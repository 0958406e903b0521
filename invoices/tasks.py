"""django-q2 tasks: thin wrappers taking ids; the work is in the services.

Delivery is at least once (reliability notes 4): every task here is safe to run twice, and
runs of the model tier on one client take turns (see `invoices.model_tier`).
"""

from __future__ import annotations

import logging

from invoices.model_tier import ModelTierError, run_model_tier

log = logging.getLogger(__name__)

MODEL_TIER_GROUP = "model-tier"


def classify_with_model(
    entry_ids: list[int] | None = None,
    client_id: int | None = None,
    trigger: str = "import",
) -> str:
    """Ask the language model about the undecided entries among `entry_ids` (or of the
    client). Returns the run's summary, which django-q2 keeps as the task result."""
    try:
        summary = run_model_tier(
            entry_ids=entry_ids,
            client_ids=[client_id] if client_id is not None else None,
            trigger=trigger,
        )
    except ModelTierError:
        # Logged, then re-raised so the task is recorded as failed in the admin.
        log.exception("model tier stopped (entries %s, client %s)", entry_ids, client_id)
        raise
    log.info("%s", summary)
    return str(summary)
