"""Uploads imported in the background: stored as an ImportJob, imported by a django-q2 task
(`timesheets.tasks.import_job_task`), with progress the admin can watch.

    job = store_upload(upload=upload, user=user, date_order=None, internal_time=None)
    run_import_job(job_id=job.pk)        # in the worker, through the task

How a job stays right when its task is delivered twice (django-q2 is at least once) or its
worker is killed:

- The claim locks the job row (select_for_update) in a short transaction of its own: a
  finished job (succeeded, failed) is skipped; so is a job whose importing worker is alive,
  known by a session advisory lock that worker holds on its connection for the job's id
  while it imports. A worker that is killed loses its connection and so the lock: its import
  transaction rolled back, and the next delivery runs the job again from the start.
- The import and the job's final state (succeeded with its batch, or failed with its errors)
  commit in one transaction, so a job is never "succeeded" without its entries, nor its
  entries stored without it saying so.
- Progress (rows read, of the total) is written per chunk through a second connection of its
  own, in autocommit, so the admin sees it while the import's transaction is still open. The
  import's transaction never writes the job row before its end (the claim committed before
  it began), so these writes never wait on it, and it never waits on them.

A file that names clients, projects or people the firm does not know is not imported
straight away: its import is rolled back and the job waits for review, its file kept, with
what the import would create (`hold_for_review`; kept in the job's `errors` as one
{"review": ...} item, the job marked failed so that no delivery runs it). Confirming
(`confirm_review`) queues it again with that list approved: the import then creates what was
listed, and a file that would create anything more waits for review again.
"""

import io
import logging
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from timesheets.importing.creating import Created, ReviewNeeded
from timesheets.importing.errors import ImportRejected, RowError
from timesheets.importing.service import clean_filename, import_or_review
from timesheets.models import ImportJob, ImportJobChunk

logger = logging.getLogger(__name__)

DEFAULT_BACKGROUND_BYTES = 2 * 1024 * 1024
# Bytes per stored block of an upload: small enough to read one at a time, large enough that
# a 50 MB file is 50 rows.
BLOCK_BYTES = 1024 * 1024
# The first key of the job's advisory lock (the second is the job's id): a namespace of ours.
JOB_LOCK_CLASS = 0x1A0B
# A failed job lists at most this many of its errors (the import lists at most 1,000).
MAX_STORED_ERRORS = 1000


def background_bytes() -> int:
    """Uploads larger than this are imported in the background (setting
    IMPORT_BACKGROUND_BYTES)."""
    from django.conf import settings

    return getattr(settings, "IMPORT_BACKGROUND_BYTES", DEFAULT_BACKGROUND_BYTES)


def store_upload(
    *,
    upload: UploadedFile,
    user: User | None,
    date_order: str | None,
    internal_time: str | None,
) -> ImportJob:
    """A queued job holding the upload, block by block (never the file whole). The caller
    enqueues its task after the commit (`timesheets.tasks.queue_import_job`)."""
    with transaction.atomic():
        job = ImportJob.objects.create(
            filename=clean_filename(upload.name or "upload.csv"),
            size=upload.size or 0,
            date_order=date_order or "",
            internal_time=internal_time or "",
            created_by=user,
        )
        for position, block in enumerate(_blocks(upload)):
            ImportJobChunk.objects.create(job=job, position=position, data=block)
    return job


def _blocks(upload: UploadedFile) -> Iterator[bytes]:
    upload.seek(0)
    pending = b""
    for piece in upload.chunks(chunk_size=BLOCK_BYTES):
        pending += piece
        while len(pending) >= BLOCK_BYTES:
            yield pending[:BLOCK_BYTES]
            pending = pending[BLOCK_BYTES:]
    if pending:
        yield pending


class StoredUpload(io.RawIOBase):
    """A job's file as a seekable binary stream, read one stored block at a time."""

    def __init__(self, job: ImportJob) -> None:
        self.job_id = job.pk
        self.size = job.size
        self.position = 0
        self._block_index = -1
        self._block = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.size:
            return 0
        index, offset = divmod(self.position, BLOCK_BYTES)
        if index != self._block_index:
            data = (
                ImportJobChunk.objects.filter(job_id=self.job_id, position=index)
                .values_list("data", flat=True)
                .first()
            )
            self._block, self._block_index = bytes(data or b""), index
        piece = self._block[offset : offset + len(buffer)]
        if not piece:
            return 0  # a block is missing: the stream ends early (the file reads as cut off)
        buffer[: len(piece)] = piece
        self.position += len(piece)
        return len(piece)


class _Progress:
    """Rows read so far, written to the job from a connection of its own (module docstring)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.db: BaseDatabaseWrapper = connections.create_connection(DEFAULT_DB_ALIAS)
        self.rows_read = 0
        self.rows_total = 0

    def __call__(self, rows_read: int, rows_total: int) -> None:
        self.rows_read, self.rows_total = rows_read, rows_total
        with self.db.cursor() as cursor:  # autocommit: each update is seen at once
            cursor.execute(
                f"UPDATE {ImportJob._meta.db_table} SET rows_read = %s, rows_total = %s "
                "WHERE id = %s",
                [rows_read, rows_total, self.job_id],
            )

    def close(self) -> None:
        self.db.close()


def _try_job_lock(job_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [JOB_LOCK_CLASS, job_id])
        return bool(cursor.fetchone()[0])


def _release_job_lock(job_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [JOB_LOCK_CLASS, job_id])


def _claim(job_id: int) -> ImportJob | None:
    """The job, marked running and its lock held; None when there is nothing to do."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return None
        if not _try_job_lock(job_id):
            return None  # another delivery is importing it right now
        job.status = ImportJob.Status.RUNNING
        job.attempts += 1
        job.started_at = timezone.now()
        job.rows_read = 0
        job.save(update_fields=["status", "attempts", "started_at", "rows_read"])
    return job


def _error_dict(error: RowError) -> dict[str, Any]:
    return {"row": error.row, "column": error.column, "reason": error.reason, "hint": error.hint}


def job_errors(job: ImportJob) -> list[RowError]:
    """A failed job's errors, as the upload page lists a refusal's."""
    return [RowError(**error) for error in job.errors if "review" not in error]


REVIEW_SUMMARY = "waiting for review: the file names clients, projects or people to create"


def job_review(job: ImportJob) -> Created | None:
    """What the job's file creates, as listed for review (and, once confirmed, approved)."""
    for item in job.errors:
        if "review" in item:
            return Created.from_json(item["review"])
    return None


def awaits_review(job: ImportJob) -> bool:
    """Whether the job holds its file for someone to confirm what it creates."""
    return job.status == ImportJob.Status.FAILED and job_review(job) is not None


def jobs_awaiting_review() -> list[ImportJob]:
    """The jobs holding a file for review, oldest first (the import batches list shows them)."""
    held = ImportJob.objects.filter(status=ImportJob.Status.FAILED, errors__0__has_key="review")
    return list(held.select_related("created_by").order_by("created_at"))


def hold_for_review(job: ImportJob, created: Created) -> None:
    """The job waits for review of `created`, its file kept (module docstring)."""
    _finish(
        job,
        keep_file=True,
        status=ImportJob.Status.FAILED,
        errors=[{"review": created.as_json()}],
        summary=REVIEW_SUMMARY,
    )


def confirm_review(*, job_id: int) -> ImportJob | None:
    """Queue a job waiting for review again, what it listed approved; None if it no longer
    waits (confirmed twice, or cancelled). The caller runs or enqueues its import."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not awaits_review(job):
            return None
        job.status, job.finished_at, job.summary = ImportJob.Status.QUEUED, None, ""
        job.save(update_fields=["status", "finished_at", "summary"])
    return job


def cancel_review(*, job_id: int) -> bool:
    """Drop a job waiting for review, and its stored file: nothing was created or imported."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not awaits_review(job):
            return False
        job.delete()
    return True


def _finish(job: ImportJob, *, keep_file: bool = False, **values: Any) -> None:
    """The job's final state, and its stored file deleted (the batch keeps its SHA-256)
    unless it waits for review."""
    for name, value in values.items():
        setattr(job, name, value)
    job.finished_at = timezone.now()
    job.save(update_fields=[*values, "finished_at"])
    if not keep_file:
        ImportJobChunk.objects.filter(job=job).delete()


def run_import_job(*, job_id: int) -> ImportJob | None:
    """Import a queued job's file (module docstring). Returns the finished job, or None when
    this delivery had nothing to do (finished already, or running in another worker)."""
    job = _claim(job_id)
    if job is None:
        return None
    progress = _Progress(job.pk)
    try:
        with transaction.atomic():
            try:
                with io.BufferedReader(StoredUpload(job), buffer_size=BLOCK_BYTES) as stream:
                    result = import_or_review(
                        name=job.filename,
                        stream=stream,
                        user=job.created_by,
                        date_order=job.date_order or None,  # type: ignore[arg-type]
                        internal_time=job.internal_time or None,
                        progress=progress,
                        # Nothing is created that nobody reviewed (module docstring).
                        approved=job_review(job),
                    )
            except ReviewNeeded as needed:
                hold_for_review(job, needed.created)
            except ImportRejected as rejected:
                # import_file's own transaction (a savepoint here) rolled back: nothing stored.
                _finish(
                    job,
                    status=ImportJob.Status.FAILED,
                    errors=[_error_dict(error) for error in rejected.errors[:MAX_STORED_ERRORS]],
                    summary="rejected; nothing was imported",
                    rows_read=progress.rows_read,
                    rows_total=progress.rows_total,
                )
            else:
                _finish(
                    job,
                    status=ImportJob.Status.SUCCEEDED,
                    batch=result.batch,
                    summary=result.summary(),
                    rows_read=progress.rows_read,
                    rows_total=progress.rows_total,
                )
    except Exception as error:
        # Not a refusal: a fault of ours or of the database. The job must not stay "running"
        # for ever, so it is recorded as failed (in a transaction of its own, the import's
        # having rolled back) and the error goes on to django-q2, which records the task.
        logger.exception("import job %s failed", job.pk)
        with transaction.atomic():
            _finish(
                job,
                status=ImportJob.Status.FAILED,
                errors=[_error_dict(RowError(None, None, f"the import stopped: {error}"))],
                summary="the import stopped with an error; nothing was imported",
            )
        raise
    finally:
        progress.close()
        _release_job_lock(job.pk)
    return job
