"""django-q2 tasks of time tracking: thin, taking ids, safe to run twice (delivery is at least
once). The work and its guarantees live in `timesheets.sync`."""

from __future__ import annotations

import logging
from functools import partial

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django_q.tasks import async_task

from timesheets import sync
from timesheets.importing import jobs
from timesheets.models import ImportBatch, ImportJob, SyncRun, TrackerConnection
from timesheets.signals import entries_imported

logger = logging.getLogger(__name__)


def sync_connection_task(connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULE) -> str:
    """One connection's sync. A second delivery while the first runs is recorded as skipped."""
    try:
        run = sync.sync_connection(connection_id=connection_id, trigger=trigger)
    except sync.ConnectionNotSyncable as exc:
        logger.info("sync of connection %s not started: %s", connection_id, exc)
        return "not started"
    except TrackerConnection.DoesNotExist:
        logger.info("sync of connection %s not started: it no longer exists", connection_id)
        return "not started"
    return run.status


def sync_all_connections() -> int:
    """The hourly schedule: one task per connection due now, so one slow tracker never holds up
    another. Returns how many were enqueued."""
    ids = list(sync.due_connections().values_list("id", flat=True))
    for connection_id in ids:
        async_task(
            "timesheets.tasks.sync_connection_task",
            connection_id,
            SyncRun.Trigger.SCHEDULE,
            q_options={"group": f"sync-{connection_id}"},
        )
    return len(ids)


def announce_synced_entries(
    *,
    entry_ids: list[int],
    frozen_entry_ids: list[int],
    sync_run_id: int | None = None,
    batch_id: int | None = None,
) -> int:
    """Enqueued by a sync page in its own transaction, so it runs after that page committed:
    tells billing which entries are new, changed or deleted (to classify, and to flag drafts)
    and which are frozen on approved invoices (to flag those). Receivers are idempotent."""
    entries_imported.send(
        sender=TrackerConnection,
        batch=ImportBatch.objects.filter(pk=batch_id).first() if batch_id else None,
        entry_ids=entry_ids,
        frozen_entry_ids=frozen_entry_ids,
        sync_run_id=sync_run_id,
    )
    return len(entry_ids) + len(frozen_entry_ids)


def queue_import_job(
    *,
    upload: UploadedFile,
    user: User | None,
    date_order: str | None = None,
    internal_time: str | None = None,
) -> ImportJob:
    """Store an upload as an ImportJob and enqueue its import once the job has committed."""
    job = jobs.store_upload(
        upload=upload, user=user, date_order=date_order, internal_time=internal_time
    )
    transaction.on_commit(
        partial(
            async_task,
            "timesheets.tasks.import_job_task",
            job.pk,
            q_options={"group": f"import-{job.pk}"},
        )
    )
    return job


def import_job_task(job_id: int) -> str:
    """Import one stored upload. A second delivery finds the job finished, or running in
    another worker, and does nothing (timesheets.importing.jobs)."""
    job = jobs.run_import_job(job_id=job_id)
    return job.status if job is not None else "nothing to do"
