"""Uploads over IMPORT_BACKGROUND_BYTES are imported by a django-q2 task (timesheets.importing
.jobs), against the real PostgreSQL database. The task function runs synchronously here;
these tests commit for real (transactional_db): the job's progress is written through a
second connection, which sees only what was committed."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DEFAULT_DB_ALIAS, connections
from django.urls import reverse
from django_q.models import OrmQ

from tests.test_csv_import import CLIENTS, PEOPLE, harvest_bytes, harvest_row, workbook_bytes
from timesheets import tasks
from timesheets.importing import jobs
from timesheets.models import (
    Client,
    ImportBatch,
    ImportJob,
    ImportJobChunk,
    Person,
    Project,
    TimeEntry,
)

UPLOAD_URL = "admin:timesheets_importbatch_import_csv"


@pytest.fixture
def firm(transactional_db):
    for email, name, role in PEOPLE:
        Person.objects.create(email=email, name=name, role=role)
    for client_name, client_projects in CLIENTS.items():
        client = Client.objects.create(name=client_name)
        for code, name, billing in client_projects:
            Project.objects.create(client=client, code=code, name=name, billing=billing)


def five_rows():
    return harvest_bytes(*[harvest_row(Notes=f"call {n}") for n in range(5)])


def queued_job(content, *, name="big.csv"):
    return tasks.queue_import_job(upload=SimpleUploadedFile(name, content), user=None)


def test_big_upload_is_queued_not_imported_in_the_request(firm, admin_client, settings):
    content = five_rows()
    settings.IMPORT_BACKGROUND_BYTES = len(content) - 1
    response = admin_client.post(
        reverse(UPLOAD_URL), {"files": [SimpleUploadedFile("big.csv", content)]}
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:timesheets_importbatch_import_job", args=[job.pk])
    assert (job.status, job.filename, job.size) == ("queued", "big.csv", len(content))
    assert b"".join(bytes(c.data) for c in job.chunks.order_by("position")) == content
    assert TimeEntry.objects.count() == 0 and ImportBatch.objects.count() == 0
    [task] = OrmQ.objects.all()  # enqueued once the job committed
    assert task.func() == "timesheets.tasks.import_job_task"
    assert task.task["args"] == (job.pk,)

    page = admin_client.get(response.url)
    assert b'http-equiv="refresh"' in page.content
    assert b"Queued" in page.content


def test_small_upload_is_still_imported_in_the_request(firm, admin_client, settings):
    content = five_rows()
    settings.IMPORT_BACKGROUND_BYTES = len(content)
    admin_client.post(reverse(UPLOAD_URL), {"files": [SimpleUploadedFile("s.csv", content)]})
    assert TimeEntry.objects.count() == 5
    assert ImportJob.objects.count() == 0


def test_task_imports_the_file_and_records_progress(firm, settings, monkeypatch):
    settings.IMPORT_CHUNK_ROWS = 2
    monkeypatch.setattr(jobs, "BLOCK_BYTES", 100)  # the file spans several stored blocks
    content = five_rows()
    job = queued_job(content)
    assert job.chunks.count() == -(-len(content) // 100)

    # What the admin would see while the import runs: the progress committed by the second
    # connection, read here from the import's own connection inside its open transaction.
    seen = []
    write = jobs._Progress.__call__

    def watching(self, rows_read, rows_total):
        write(self, rows_read, rows_total)
        fresh = ImportJob.objects.get(pk=job.pk)
        seen.append((fresh.status, fresh.rows_read, fresh.rows_total, TimeEntry.objects.count()))

    monkeypatch.setattr(jobs._Progress, "__call__", watching)
    assert tasks.import_job_task(job.pk) == "succeeded"

    # Entries written chunk by chunk are visible to the import's own transaction only.
    assert seen == [("running", 2, 5, 2), ("running", 4, 5, 4), ("running", 5, 5, 5)]
    job.refresh_from_db()
    assert (job.status, job.rows_read, job.rows_total, job.attempts) == ("succeeded", 5, 5, 1)
    assert job.batch is not None and job.batch.created == 5
    assert job.summary == "harvest, 5 rows: 5 created, 0 updated, 0 unchanged"
    assert TimeEntry.objects.count() == 5
    assert ImportJobChunk.objects.count() == 0  # the stored file is gone once imported


def test_a_second_delivery_does_nothing(firm):
    job = queued_job(five_rows())
    assert tasks.import_job_task(job.pk) == "succeeded"
    entries = list(TimeEntry.objects.values_list("id", "updated_at"))

    assert tasks.import_job_task(job.pk) == "nothing to do"
    assert list(TimeEntry.objects.values_list("id", "updated_at")) == entries
    assert ImportBatch.objects.count() == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)


def test_a_delivery_while_another_worker_imports_does_nothing(firm):
    job = queued_job(five_rows())
    other_worker = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other_worker.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [jobs.JOB_LOCK_CLASS, job.pk])
        assert tasks.import_job_task(job.pk) == "nothing to do"
        assert TimeEntry.objects.count() == 0
    finally:
        other_worker.close()  # its lock goes with its connection, as a killed worker's does
    assert tasks.import_job_task(job.pk) == "succeeded"


def test_a_job_left_running_by_a_killed_worker_is_imported_by_the_next_delivery(firm):
    job = queued_job(five_rows())
    # A worker that was killed mid-import: its transaction rolled back, its lock is gone.
    ImportJob.objects.filter(pk=job.pk).update(status="running", attempts=1, rows_read=2)
    assert tasks.import_job_task(job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.attempts, job.rows_read) == (2, 5)
    assert TimeEntry.objects.count() == 5


def test_a_failing_file_records_a_failed_job_and_writes_nothing(firm, settings, admin_client):
    settings.IMPORT_CHUNK_ROWS = 2
    rows = [harvest_row(Notes=f"call {n}") for n in range(5)]
    rows[3] = harvest_row(Hours="30:00")  # row 5 of the file; rows 2-4 were written by then
    job = queued_job(harvest_bytes(*rows))

    assert tasks.import_job_task(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.errors == [
        {
            "row": 5,
            "column": "Hours",
            "reason": "duration '30:00' is 30:00:00, over the 24 hours one entry can last",
            "hint": "correct the entry in the tracker, or split it into entries of at most 24 "
            "hours, and export again",
        }
    ]
    assert job.batch is None
    assert TimeEntry.objects.count() == 0 and ImportBatch.objects.count() == 0
    assert ImportJobChunk.objects.count() == 0
    assert tasks.import_job_task(job.pk) == "nothing to do"

    page = admin_client.get(reverse("admin:timesheets_importbatch_import_job", args=[job.pk]))
    assert b"over the 24 hours one entry can last" in page.content
    assert b'http-equiv="refresh"' not in page.content


def test_the_job_page_shows_the_result_and_needs_the_import_permission(firm, admin_client, client):
    job = queued_job(five_rows())
    tasks.import_job_task(job.pk)
    url = reverse("admin:timesheets_importbatch_import_job", args=[job.pk])
    page = admin_client.get(url)
    assert b"harvest, 5 rows: 5 created, 0 updated, 0 unchanged" in page.content
    assert b"5 of 5 (100%)" in page.content
    assert client.get(url).status_code == 302  # to the login page


def test_an_xlsx_upload_is_read_from_its_stored_blocks(firm, monkeypatch):
    monkeypatch.setattr(jobs, "BLOCK_BYTES", 1000)  # a zip read across blocks, seeking
    rows = [list(harvest_row(Notes=f"call {n}").values()) for n in range(3)]
    content = workbook_bytes([list(harvest_row()), *rows])
    job = queued_job(content, name="big.xlsx")
    assert job.chunks.count() > 2
    assert tasks.import_job_task(job.pk) == "succeeded"
    assert TimeEntry.objects.count() == 3
