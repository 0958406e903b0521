"""Which entries the model tier asks about, the tasks that ask (one per client), and the lock
that makes runs on one client take turns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django_q.tasks import async_task

from integrations.claude import RETRYABLE_REASONS
from invoices.classification import classify_entries
from invoices.core.classify import TIER_LLM, TIER_NONE
from invoices.model_tier.model_settings import model_configured
from timesheets.models import TimeEntry

# Advisory-lock namespace of the model tier (any constant; the second key is the client id).
LOCK_NAMESPACE = 0x4C4C4D


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


def classify_unclassified(scope: QuerySet[TimeEntry]) -> None:
    """Entries never classified have no deterministic decision yet: make it first."""
    missing = scope.filter(classification__isnull=True)
    if missing.exists():
        classify_entries(missing)


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
