"""The hourly sync from Harvest, Clockify and Toggl Track, against local fakes of their APIs over
real HTTP (tests/fakes) and the real PostgreSQL database."""

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal as D
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from integrations import clockify, harvest, toggl
from integrations.encryption import decrypt
from invoices.approval import approve_invoice
from invoices.drafting import Period, draft_invoices
from invoices.models import Flag, Invoice, InvoiceEntry
from tests import billing_fixtures as make
from tests.fakes.clockify_server import clockify_server, hex_id  # noqa: F401 - fixture
from tests.fakes.harvest_server import harvest_server  # noqa: F401 - fixture
from tests.fakes.toggl_server import toggl_server  # noqa: F401 - fixture
from timesheets import sync, tasks
from timesheets.importing.keys import content_hash
from timesheets.models import (
    ExternalPerson,
    ExternalProject,
    HeldEntry,
    ImportBatch,
    SyncRun,
    TimeEntry,
    TrackerConnection,
)
from timesheets.signals import entries_imported
from timesheets.sync import storing
from timesheets.sync.remote import RemoteEntry, RemoteProject, RemoteUser

pytestmark = pytest.mark.django_db
KEY = Fernet.generate_key().decode()
DAY = timezone.now().date() - dt.timedelta(days=3)  # inside every rolling window
Status, RunStatus = TrackerConnection.Status, SyncRun.Status


def today() -> dt.date:
    """Today at the moment of asking: a run crossing midnight must not compare with yesterday."""
    return timezone.now().date()


@pytest.fixture(autouse=True)
def sync_settings(settings, monkeypatch):
    settings.BILLABLES_ENCRYPTION_KEYS = [KEY]
    settings.TRACKER_BACKOFF_SECONDS = 0.01
    settings.TRACKER_MAX_RETRIES = 3
    settings.TRACKER_READ_TIMEOUT_SECONDS = 1
    settings.TRACKER_MAX_WAIT_SECONDS = 5
    # Tasks enqueued by a sync (the announcement to billing) run in-process, as in a worker.
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)


@pytest.fixture
def harvest_api(harvest_server):  # noqa: F811 - the fake's fixture, under a shorter name
    return harvest_server


@pytest.fixture
def clockify_api(clockify_server):  # noqa: F811
    return clockify_server


@pytest.fixture
def toggl_api(toggl_server):  # noqa: F811
    return toggl_server


@pytest.fixture
def firm(db):
    make.firm()
    dev = make.category("development")
    make.rule(dev, task="Dev")
    acme = make.client("Acme")
    website = make.project(acme, "ACME", name="Website")
    ana = make.person("Ana Pereira", "Partner", email="ana@example.com")
    ben = make.person("Ben Okafor", "Consultant", email="ben@example.com")
    make.rate("200.00", role="Partner")
    make.rate("100.00", role="Consultant")
    return {"acme": acme, "website": website, "ana": ana, "ben": ben}


@pytest.fixture
def approver(db):
    user = User.objects.create_user("approver", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["approve_invoice", "view_invoice"])
    )
    return User.objects.get(pk=user.pk)


def connect(kind, *, name=None, account_id, token, base_url, reports_url="", **fields):
    conn = TrackerConnection(
        name=name or kind.capitalize(),
        kind=kind,
        account_id=account_id,
        base_url=base_url,
        reports_url=reports_url,
        **fields,
    )
    sync.set_token(connection=conn, token=token)
    conn.save()
    return conn


def harvest_people(fake):
    fake.add_user(101, "Ana", "Pereira", "ana@example.com")
    fake.add_user(102, "Ben", "Okafor", "ben@example.com")
    fake.add_project(201, "Website", "ACME", 301, "Acme")


def harvest_connection(fake, **fields):
    return connect(
        "harvest", account_id=fake.account_id, token=fake.token, base_url=fake.url, **fields
    )


def run(conn, *, window=False, trigger=SyncRun.Trigger.COMMAND):
    """One sync; `window=True` makes the rolling-window re-read due now."""
    if window:
        TrackerConnection.objects.filter(pk=conn.pk).update(window_checked_at=None)
    return sync.sync_connection(connection_id=conn.pk, trigger=trigger)


def counts(run):
    return {
        name: getattr(run, name)
        for name in ("pages", "fetched", "created", "updated", "deleted", "unchanged", "frozen")
    }


def reload(conn):
    return TrackerConnection.objects.get(pk=conn.pk)


# --- Harvest ---------------------------------------------------------------------------------


def test_harvest_follows_cursor_links_to_the_last_page(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    for n in range(120):
        fake.add_entry(
            user_id=101 + n % 2, project_id=201, spent_date=DAY, hours="0.25", notes=f"n{n}"
        )
    conn = harvest_connection(fake, options={"page_size": 50})

    result = run(conn)

    assert result.status == RunStatus.SUCCEEDED
    assert counts(result) == {
        "pages": 3,
        "fetched": 120,
        "created": 120,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
        "frozen": 0,
    }
    pages = fake.entry_requests()
    assert len(pages) == 3
    assert pages[0].query == {
        "per_page": "50",
        "from": (today() - dt.timedelta(days=45)).isoformat(),
        "to": (today() + dt.timedelta(days=1)).isoformat(),
    }
    # Later pages are the cursor links, followed verbatim (no page numbers built here).
    assert [set(p.query) for p in pages[1:]] == [{"cursor", "per_page", "ref"}] * 2
    for seen in fake.requests:
        assert seen.headers["authorization"] == "Bearer harvest-token"
        assert seen.headers["harvest-account-id"] == "4242"
        assert seen.headers["user-agent"] == settings.HARVEST_USER_AGENT
    entries = TimeEntry.objects.filter(connection=conn)
    assert entries.count() == 120
    assert sorted(entries.values_list("external_id", flat=True)) == sorted(
        str(i) for i in fake.entries
    )
    one = entries.get(notes="n7")
    assert (one.person, one.client, one.project, one.task) == (
        firm["ben"],
        firm["acme"],
        firm["website"],
        "Dev",
    )
    assert (one.date, one.duration_seconds, one.source, one.tracker_billable) == (
        DAY,
        900,
        "harvest",
        True,
    )
    conn = reload(conn)
    assert (conn.status, conn.cursor, conn.last_success_at is not None) == (
        Status.ACTIVE,
        result.started_at,
        True,
    )
    assert result.import_batch.created == 120


def test_harvest_page_number_links_are_followed_too(firm, harvest_api):
    fake = harvest_api
    fake.pagination = "page"
    harvest_people(fake)
    for n in range(101):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    conn = harvest_connection(fake, options={"page_size": 50})
    result = run(conn)
    assert (result.pages, result.created) == (3, 101)
    assert [p.query.get("page") for p in fake.entry_requests()] == [None, "2", "3"]


def test_decimal_hours_rounded_hours_and_start_time(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    exact = fake.add_entry(
        user_id=101, project_id=201, spent_date=DAY, hours="2.11", rounded_hours="2.25"
    )
    timed = fake.add_entry(
        user_id=101, project_id=201, spent_date=DAY, hours="0.333", started_time="3:00pm"
    )
    conn = harvest_connection(fake)
    run(conn)
    by_id = {e.external_id: e for e in TimeEntry.objects.all()}
    assert by_id[str(exact["id"])].duration_seconds == 7596  # 2.11 h exactly
    assert by_id[str(timed["id"])].duration_seconds == 1199  # 1198.8 s, half up
    assert by_id[str(timed["id"])].start_time == dt.time(15, 0)

    conn.options = {"hours": "rounded_hours"}
    conn.save()
    result = run(conn, window=True)
    assert result.updated == 1
    assert TimeEntry.objects.get(external_id=str(exact["id"])).duration_seconds == 8100


def test_rerun_duplicates_nothing(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    for n in range(30):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    conn = harvest_connection(fake)
    first = run(conn)
    ids_before = sorted(TimeEntry.objects.values_list("id", flat=True))

    again = run(conn, window=True)
    assert counts(again) == {
        "pages": 2,  # entries changed since the cursor (none), then the window
        "fetched": 30,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "unchanged": 30,
        "frozen": 0,
    }
    assert again.import_batch is None  # nothing written, no batch
    TrackerConnection.objects.filter(pk=conn.pk).update(cursor=None)  # a full re-read
    third = run(conn)
    assert (third.created, third.unchanged) == (0, 30)
    assert sorted(TimeEntry.objects.values_list("id", flat=True)) == ids_before
    assert first.created == 30


def test_incremental_run_asks_for_changes_since_the_cursor_minus_the_overlap(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    conn = harvest_connection(fake, overlap_minutes=10)
    first = run(conn)
    fake.requests.clear()

    second = run(conn)  # the window was read by the first run less than an hour ago

    assert [p.query for p in fake.entry_requests()] == [
        {
            "per_page": "2000",
            "updated_since": harvest.format_timestamp(first.started_at - dt.timedelta(minutes=10)),
        }
    ]
    assert counts(second) == dict(counts(first), pages=1, fetched=0, created=0)
    assert reload(conn).cursor == second.started_at


def test_edited_entry_is_updated(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    entry = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes="draft")
    other = fake.add_entry(user_id=102, project_id=201, spent_date=DAY, hours="2")
    conn = harvest_connection(fake)
    run(conn)
    stored = TimeEntry.objects.get(external_id=str(entry["id"]))

    fake.edit_entry(entry["id"], notes="Drafted the motion", hours="1.5")
    result = run(conn)

    assert (result.fetched, result.updated, result.created, result.unchanged) == (1, 1, 0, 0)
    stored.refresh_from_db()
    assert (stored.notes, stored.normalized_notes, stored.duration_seconds) == (
        "Drafted the motion",
        "drafted the motion",
        5400,
    )
    assert stored.source_updated_at == harvest.parse_timestamp(entry["updated_at"])
    assert TimeEntry.objects.get(external_id=str(other["id"])).duration_seconds == 7200
    assert TimeEntry.objects.count() == 2


def test_deleted_entry_is_noticed_in_the_window_and_comes_back_if_restored(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    kept = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    gone = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="2", notes="x")
    old = fake.add_entry(
        user_id=101, project_id=201, spent_date=today() - dt.timedelta(days=60), hours="3"
    )
    conn = harvest_connection(fake, sync_from=today() - dt.timedelta(days=90))
    assert run(conn).created == 3
    fake.delete_entry(gone["id"])
    fake.delete_entry(old["id"])  # outside the 45-day window: not noticed

    result = run(conn, window=True)

    assert (result.deleted, result.unchanged) == (1, 1)
    assert sorted(TimeEntry.objects.values_list("external_id", flat=True)) == sorted(
        [str(kept["id"]), str(old["id"])]
    )
    deleted = TimeEntry.all_objects.get(external_id=str(gone["id"]))
    assert deleted.deleted_at is not None and deleted.notes == "x"

    again = run(conn, window=True)  # a deletion is noticed once
    assert again.deleted == 0

    fake.add_entry(
        user_id=101, project_id=201, spent_date=DAY, hours="2", notes="x", entry_id=gone["id"]
    )
    back = run(conn, window=True)
    assert back.updated == 1
    assert TimeEntry.objects.get(external_id=str(gone["id"])).deleted_at is None


def test_deleted_entry_leaves_its_draft(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    gone = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="2")
    conn = harvest_connection(fake)
    run(conn)
    period = Period.month(f"{DAY:%Y-%m}")
    invoice = draft_invoices(period=period).invoices[0]
    assert invoice.total == D("600.00")

    fake.delete_entry(gone["id"])
    assert run(conn, window=True).deleted == 1

    invoice.refresh_from_db()
    assert Flag.STALE in invoice.flags  # billing was told
    rebuilt = draft_invoices(period=period).invoices[0]
    assert (rebuilt.pk, rebuilt.total) == (invoice.pk, D("200.00"))


def test_change_or_deletion_of_an_approved_entry_is_not_applied_and_flags_the_invoice(
    firm, harvest_api, approver
):
    fake = harvest_api
    harvest_people(fake)
    edited = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes="a")
    removed = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="2", notes="b")
    conn = harvest_connection(fake)
    run(conn)
    period = Period.month(f"{DAY:%Y-%m}")
    invoice = approve_invoice(invoice=draft_invoices(period=period).invoices[0], user=approver)
    assert invoice.total == D("600.00") and Flag.SOURCE_CHANGED not in invoice.flags

    fake.edit_entry(edited["id"], hours="5", notes="a, longer")
    fake.delete_entry(removed["id"])
    result = run(conn, window=True)

    assert (result.frozen, result.updated, result.deleted) == (2, 0, 0)
    first = TimeEntry.objects.get(external_id=str(edited["id"]))
    second = TimeEntry.objects.get(external_id=str(removed["id"]))  # not deleted
    assert (first.duration_seconds, first.notes, first.locked) == (3600, "a", True)
    assert first.pending_source_change["duration_seconds"] == 18000
    assert first.pending_source_change["notes"] == "a, longer"
    assert second.pending_source_change["deleted"] is True
    assert second.deleted_at is None
    invoice.refresh_from_db()
    assert Flag.SOURCE_CHANGED in invoice.flags
    assert invoice.total == D("600.00")
    assert InvoiceEntry.objects.filter(invoice=invoice, is_live=True).count() == 2


def test_running_timer_is_skipped_until_stopped(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    timer = fake.add_entry(
        user_id=101, project_id=201, spent_date=DAY, hours="0.5", is_running=True
    )
    conn = harvest_connection(fake)
    result = run(conn)
    assert (result.running_skipped, result.created, TimeEntry.objects.count()) == (1, 0, 0)
    fake.edit_entry(timer["id"], is_running=False, hours="0.75")
    assert run(conn).created == 1
    assert TimeEntry.objects.get().duration_seconds == 2700


def test_entry_over_24_hours_is_reported_not_stored(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    bad = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="30")
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    conn = harvest_connection(fake)
    result = run(conn)
    assert (result.status, result.created, result.errors) == (RunStatus.SUCCEEDED, 1, 1)
    assert result.error_messages == [
        f"entry {bad['id']} of {DAY}: duration 30:00:00 is over 24 hours; correct it in the tracker"
    ]
    assert "over 24 hours" in reload(conn).status_reason


def test_harvest_429_waits_for_retry_after(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    fake.fail_next(1, status=429, retry_after=1, path="/time_entries")
    conn = harvest_connection(fake)

    result = run(conn)

    assert (result.status, result.created) == (RunStatus.SUCCEEDED, 1)
    limited, retried = fake.entry_requests()[:2]
    assert retried.at - limited.at >= 1.0
    assert retried.query == limited.query


def test_harvest_own_rate_limit_is_respected(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    for n in range(12):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    fake.rate_limit = (3, 1.0)  # 3 requests per second
    # One 429 for certain (however slow the machine runs the requests): waited, asked again.
    fake.fail_next(1, status=429, retry_after=1)
    conn = harvest_connection(fake, options={"page_size": 2})

    result = run(conn)

    assert (result.status, result.pages, result.created) == (RunStatus.SUCCEEDED, 6, 12)
    pages = [(status, at) for path, status, at in fake.answers if path.endswith("time_entries")]
    served = [at for status, at in pages if status == 200]
    assert len(served) == 6
    assert 429 in {status for _, status, _ in fake.answers}
    # Never more than 3 requests served in a second (a little slack for the clock reads).
    ok = [at for _, status, at in fake.answers if status == 200]
    assert all(ok[n + 3] - ok[n] >= 0.95 for n in range(len(ok) - 3))


def test_rate_limit_longer_than_the_wait_defers_the_connection(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    fake.fail_next(1, status=429, retry_after=600)
    conn = harvest_connection(fake)

    result = run(conn)

    assert result.status == RunStatus.RATE_LIMITED
    assert result.error_messages == ["Harvest rate limit: retry after 600 s"]
    conn = reload(conn)
    assert conn.status == Status.ACTIVE
    assert 590 <= (conn.retry_after - result.started_at).total_seconds() <= 620
    assert conn.cursor is None
    assert list(sync.due_connections()) == []
    assert list(sync.due_connections(now=conn.retry_after)) == [conn]
    assert run(conn).status == RunStatus.SUCCEEDED  # by hand, it may try again
    assert reload(conn).retry_after is None


def test_server_errors_are_retried(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    fake.fail_next(2, status=503, path="/time_entries")
    result = run(harvest_connection(fake))
    assert (result.status, result.created, len(fake.entry_requests())) == (
        RunStatus.SUCCEEDED,
        1,
        3,
    )


def test_persisting_server_errors_fail_the_run_and_the_next_run_recovers(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    fake.fail_next(4, status=500, path="/time_entries")
    conn = harvest_connection(fake)

    failed = run(conn)

    assert (failed.status, failed.created) == (RunStatus.FAILED, 0)
    assert failed.error_messages == ["Harvest did not answer after 4 attempts (HTTP 500)"]
    conn = reload(conn)
    assert (conn.status, conn.consecutive_failures) == (Status.FAILING, 1)
    assert conn.status_reason == (
        "Harvest did not answer after 4 attempts (HTTP 500) (1 failed run in a row; tried "
        "again every run)"
    )
    assert list(sync.due_connections()) == [conn]  # failing connections are tried again

    recovered = run(conn)
    assert (recovered.status, recovered.created) == (RunStatus.SUCCEEDED, 1)
    conn = reload(conn)
    assert (conn.status, conn.status_reason, conn.consecutive_failures) == (Status.ACTIVE, "", 0)


def test_slow_answer_times_out_and_is_retried(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    fake.fail_next(1, status=None, delay=2.5, path="/time_entries")  # read timeout is 1 s
    result = run(harvest_connection(fake))
    assert (result.status, result.created, len(fake.entry_requests())) == (
        RunStatus.SUCCEEDED,
        1,
        2,
    )


def test_bad_token_stops_the_connection_with_a_clear_status(
    firm, harvest_api, admin_client, caplog
):
    fake = harvest_api
    harvest_people(fake)
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    conn = harvest_connection(fake)
    fake.token = "rotated-at-harvest"

    with caplog.at_level(logging.DEBUG):
        result = run(conn)

    reason = (
        "the tracker refused the token: Harvest refused the token or account id: HTTP 401 "
        "invalid_token: The access token provided is expired, revoked, malformed or invalid "
        "for other reasons.. Save a new token to resume."
    )
    assert (result.status, result.error_messages) == (RunStatus.FAILED, [reason])
    conn = reload(conn)
    assert (conn.status, conn.status_reason) == (Status.STOPPED, reason)
    assert "harvest-token" not in caplog.text
    assert len(fake.requests) == 1  # a refused token is not retried
    assert list(sync.due_connections()) == []
    with pytest.raises(sync.ConnectionNotSyncable, match="is stopped: the tracker refused"):
        run(conn)
    page = admin_client.get(reverse("admin:timesheets_trackerconnection_changelist"))
    assert "Stopped (needs someone to fix it)" in page.content.decode()
    assert "the tracker refused the token: Harvest refused the token" in page.content.decode()
    change = reverse("admin:timesheets_trackerconnection_change", args=[conn.pk])
    assert "Save a new token to resume." in admin_client.get(change).content.decode()

    sync.set_token(connection=conn, token="rotated-at-harvest")
    conn.save()
    assert reload(conn).status == Status.ACTIVE
    assert run(conn).created == 1


def test_user_agent_and_account_header_are_required_by_the_fake(harvest_api):
    """The fake holds the client to Harvest's contract: no User-Agent is a 400."""
    import requests

    fake = harvest_api
    response = requests.get(
        f"{fake.url}/time_entries",
        headers={
            "Authorization": "Bearer harvest-token",
            "Harvest-Account-Id": "4242",
            "User-Agent": "",
        },
        timeout=5,
    )
    assert response.status_code == 400
    response = requests.get(
        f"{fake.url}/time_entries",
        headers={"Authorization": "Bearer harvest-token", "User-Agent": "x (y@z)"},
        timeout=5,
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    with pytest.raises(ValueError, match="User-Agent"):
        harvest.HarvestClient(token="t", account_id="1", user_agent=" ")


# --- concurrency and crashes --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_second_sync_of_the_same_connection_is_skipped(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    for n in range(10):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    conn = harvest_connection(fake, options={"page_size": 5})
    hold = fake.hold_page(2)
    results = {}

    def first_run():
        try:
            results["first"] = run(conn)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_run)
    thread.start()
    assert hold.reached.wait(timeout=30)
    running = SyncRun.objects.get(status=RunStatus.RUNNING)  # a long run shows its progress
    window = f"{today() - dt.timedelta(days=45)} to {today() + dt.timedelta(days=1)}"
    assert (running.pages, running.created, running.progress) == (
        1,
        5,
        f"entries dated {window}: 1 pages, 5 entries read",
    )
    second = run(conn)
    hold.release.set()
    thread.join(timeout=60)

    assert (second.status, second.progress) == (
        RunStatus.SKIPPED,
        "another sync of this connection was running; nothing done",
    )
    assert (results["first"].status, results["first"].created) == (RunStatus.SUCCEEDED, 10)
    assert TimeEntry.objects.count() == 10
    assert list(SyncRun.objects.order_by("started_at").values_list("status", flat=True)) == [
        RunStatus.SUCCEEDED,
        RunStatus.SKIPPED,
    ]


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_sync_then_the_next_run_completes(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    for n in range(25):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    conn = harvest_connection(fake, options={"page_size": 10})
    hold = fake.hold_page(3)  # pages 1 and 2 are stored, then the worker hangs on page 3
    database = connection.settings_dict
    login = quote(database["USER"]) + (
        f":{quote(database['PASSWORD'])}" if database.get("PASSWORD") else ""
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{login}@{database['HOST']}:{database['PORT']}/"
        f"{database['NAME']}",
        "BILLABLES_ENCRYPTION_KEYS": KEY,
        "Q_SYNC": "false",
    }
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "sync", "--connection", str(conn.pk)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert hold.reached.wait(timeout=60), worker.stdout.read().decode()
        mid = SyncRun.objects.get()
        assert (mid.status, mid.pages, mid.created) == (RunStatus.RUNNING, 2, 20)
        assert TimeEntry.objects.count() == 20
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        hold.release.set()

    # The killed worker's session is gone, and its advisory lock with it.
    result = run(conn)

    assert (result.status, result.created, result.unchanged) == (RunStatus.SUCCEEDED, 5, 20)
    assert list(SyncRun.objects.order_by("started_at").values_list("status", flat=True)) == [
        RunStatus.ABANDONED,
        RunStatus.SUCCEEDED,
    ]
    assert sorted(TimeEntry.objects.values_list("external_id", flat=True)) == sorted(
        str(i) for i in fake.entries
    )
    # The killed run's pages were announced through the queue in their own transactions.
    assert OrmQ.objects.count() == 2


def test_a_page_that_fails_to_store_keeps_the_earlier_pages(firm, harvest_api, monkeypatch):
    """A crash inside page 2 (simulated): page 1 stays stored, the run is marked failed, and
    the next run completes with nothing lost or duplicated."""
    fake = harvest_api
    harvest_people(fake)
    for n in range(10):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    conn = harvest_connection(fake, options={"page_size": 5})
    real_upsert = storing.upsert_entries
    calls = []

    def crash_on_second_page(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker died")
        return real_upsert(**kwargs)

    monkeypatch.setattr(storing, "upsert_entries", crash_on_second_page)
    with pytest.raises(RuntimeError, match="worker died"):
        run(conn)
    crashed = SyncRun.objects.get()
    assert (crashed.status, crashed.pages, crashed.created) == (RunStatus.FAILED, 1, 5)
    assert crashed.error_messages == ["the run stopped on an unexpected error (see the worker log)"]
    assert TimeEntry.objects.count() == 5
    assert reload(conn).status == Status.FAILING

    monkeypatch.setattr(storing, "upsert_entries", real_upsert)
    result = run(conn)
    assert (result.created, result.unchanged) == (5, 5)
    assert TimeEntry.objects.count() == 10


# --- mapping ------------------------------------------------------------------------------------


def test_unmapped_person_waits_and_is_synced_once_mapped_in_the_admin(
    firm, harvest_api, admin_client, django_capture_on_commit_callbacks
):
    fake = harvest_api
    harvest_people(fake)
    fake.add_user(103, "Cleo", "Marsh", "cleo@elsewhere.example")
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    waiting = [
        fake.add_entry(user_id=103, project_id=201, spent_date=DAY, hours="2", notes=f"c{n}")
        for n in range(3)
    ]
    conn = harvest_connection(fake)

    first = run(conn)

    assert (first.created, first.held) == (1, 3)
    cleo = ExternalPerson.objects.get(connection=conn, external_id="103")
    assert (cleo.name, cleo.email, cleo.person) == ("Cleo Marsh", "cleo@elsewhere.example", None)
    assert ExternalPerson.objects.get(external_id="101").matched_by == "email"
    assert HeldEntry.objects.filter(external_person=cleo).count() == 3
    listing = admin_client.get(reverse("admin:timesheets_externalperson_changelist"))
    rows = listing.context["cl"].result_list
    assert [(row.name, row.waiting) for row in rows] == [
        ("Cleo Marsh", 3),  # the unmapped ones first
        ("Ana Pereira", 0),  # (Ben has no entries: the sync has not met him)
    ]

    cleo_person = make.person("Cleo Marsh", "Consultant", email="cleo@northwind.example")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:timesheets_externalperson_change", args=[cleo.pk]),
            {"person": cleo_person.pk},
        )
    assert response.status_code == 302

    cleo.refresh_from_db()
    assert (cleo.person, cleo.matched_by) == (cleo_person, "admin")
    released = SyncRun.objects.get(trigger=SyncRun.Trigger.MAPPING)
    assert (released.status, released.created, released.held) == (RunStatus.SUCCEEDED, 3, 0)
    assert HeldEntry.objects.count() == 0
    assert sorted(
        TimeEntry.objects.filter(person=cleo_person).values_list("external_id", flat=True)
    ) == sorted(str(e["id"]) for e in waiting)


def test_unmapped_project_is_matched_when_the_project_is_added(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_project(202, "Patient portal", "UMB-PORTAL", 302, "Umbrella Health")
    fake.add_entry(user_id=101, project_id=202, spent_date=DAY, hours="1", notes="portal")
    conn = harvest_connection(fake)
    assert (run(conn).held, TimeEntry.objects.count()) == (1, 0)
    assert ExternalProject.objects.get(external_id="202").project is None

    umbrella = make.client("Umbrella Health")
    portal = make.project(umbrella, "UMB-PORTAL", name="Patient portal")
    result = run(conn)  # nothing changed at Harvest: the waiting entry is stored from the queue

    assert (result.created, result.fetched) == (1, 0)
    assert TimeEntry.objects.get().project == portal
    assert ExternalProject.objects.get(external_id="202").matched_by == "code"


def test_one_persons_time_from_two_trackers_is_one_invoice(firm, harvest_api, clockify_api):
    harvest_people(harvest_api)
    harvest_api.add_entry(
        user_id=101, project_id=201, spent_date=DAY, hours="1.5", notes="Drafted the motion"
    )
    cf = clockify_api
    ana_cf, website_cf = hex_id(0xA1), hex_id(0xB1)
    cf.add_user(ana_cf, "Ana P.", "ANA@example.com")
    cf.add_project(website_cf, "Website", "Acme")
    cf.add_entry(
        user_id=ana_cf,
        project_id=website_cf,
        start=dt.datetime.combine(DAY, dt.time(14, 0), tzinfo=dt.UTC),
        seconds=1800,
        description="Call with the client",
    )
    run(harvest_connection(harvest_api))
    clock = connect(
        "clockify",
        account_id=cf.workspace_id,
        token=cf.api_key,
        base_url=cf.core_url,
        reports_url=cf.reports_url,
    )
    run(clock)

    entries = TimeEntry.objects.order_by("source")
    assert [(e.source, e.person, e.project, e.duration_seconds) for e in entries] == [
        ("clockify", firm["ana"], firm["website"], 1800),
        ("harvest", firm["ana"], firm["website"], 5400),
    ]
    assert ExternalPerson.objects.get(connection=clock).matched_by == "email"
    assert ExternalProject.objects.get(connection=clock).matched_by == "name"
    [invoice] = draft_invoices(period=Period.month(f"{DAY:%Y-%m}")).invoices
    assert invoice.total == D("400.00")  # 2 h of Ana at 200.00
    assert set(
        InvoiceEntry.objects.filter(invoice=invoice).values_list("entry__source", flat=True)
    ) == {"harvest", "clockify"}
    assert Invoice.objects.count() == 1


# --- Clockify -------------------------------------------------------------------------------------


def clockify_firm(cf):
    cf.add_user(hex_id(0xA1), "Ana Pereira", "ana@example.com")
    cf.add_user(hex_id(0xA2), "Ben Okafor", "ben@example.com")
    cf.add_project(hex_id(0xB1), "Website", "Acme")


def clockify_connection(cf, **fields):
    return connect(
        "clockify",
        account_id=cf.workspace_id,
        token=cf.api_key,
        base_url=cf.core_url,
        reports_url=cf.reports_url,
        **fields,
    )


def at(hour, minute=0, day=DAY):
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def test_clockify_detailed_report_pages_to_the_end(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    for n in range(120):
        cf.add_entry(
            user_id=hex_id(0xA1 + n % 2),
            project_id=hex_id(0xB1),
            start=at(8) + dt.timedelta(minutes=n),
            seconds=60 * (n + 1),
            description=f"n{n}",
        )
    cf.add_entry(user_id=hex_id(0xA1), project_id=hex_id(0xB1), start=at(20), seconds=None)
    conn = clockify_connection(cf, options={"page_size": 50})

    result = run(conn)

    reports = [r for r in cf.requests if r.path.endswith("/reports/detailed")]
    first, second = today() - dt.timedelta(days=45), today() - dt.timedelta(days=14)
    assert [
        (
            r.body["dateRangeStart"],
            r.body["dateRangeEnd"],
            r.body["detailedFilter"]["page"],
            r.body["detailedFilter"]["pageSize"],
        )
        for r in reports
    ] == [
        (f"{first}T00:00:00.000Z", f"{second - dt.timedelta(days=1)}T23:59:59.999Z", 1, 50),
        *[
            (f"{second}T00:00:00.000Z", f"{today() + dt.timedelta(days=1)}T23:59:59.999Z", n, 50)
            for n in (1, 2, 3)
        ],
    ]
    assert (result.pages, result.fetched, result.created, result.running_skipped) == (
        4,  # an empty page for the first 31 days, then 50 + 50 + 21 entries
        121,
        120,
        1,
    )
    entry = TimeEntry.objects.get(notes="n7")
    assert (entry.person, entry.date, entry.start_time, entry.duration_seconds, entry.task) == (
        firm["ben"],
        DAY,
        dt.time(8, 7),
        480,
        "Dev",
    )


def test_clockify_user_endpoint_pages_per_user(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    for n in range(60):
        cf.add_entry(
            user_id=hex_id(0xA1),
            project_id=hex_id(0xB1),
            start=at(6) + dt.timedelta(minutes=n),
            seconds=5400,
        )
    for n in range(10):
        cf.add_entry(
            user_id=hex_id(0xA2),
            project_id=hex_id(0xB1),
            start=at(9) + dt.timedelta(minutes=n),
            seconds=45,
        )
    conn = clockify_connection(cf, options={"api": "user", "page_size": 50, "chunk_days": 60})

    result = run(conn)

    entry_pages = [
        (r.path.split("/user/")[1].split("/")[0], r.query["page"])
        for r in cf.requests
        if r.path.endswith("/time-entries")
    ]
    assert entry_pages == [(hex_id(0xA1), "1"), (hex_id(0xA1), "2"), (hex_id(0xA2), "1")]
    assert [r.query for r in cf.requests if r.path.endswith("/users")] == [
        {"page": "1", "page-size": "50"}
    ]
    assert (result.pages, result.created) == (3, 70)
    durations = sorted(set(TimeEntry.objects.values_list("duration_seconds", flat=True)))
    assert durations == [45, 5400]  # PT45S and PT1H30M


def test_clockify_deleted_and_edited_entries(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    gone = cf.add_entry(user_id=hex_id(0xA1), project_id=hex_id(0xB1), start=at(9), seconds=600)
    edited = cf.add_entry(user_id=hex_id(0xA1), project_id=hex_id(0xB1), start=at(10), seconds=600)
    conn = clockify_connection(cf)
    assert run(conn).created == 2
    cf.delete_entry(gone["id"])
    cf.edit_entry(edited["id"], seconds=1200, description="longer")

    result = run(conn, window=True)

    assert (result.deleted, result.updated) == (1, 1)
    assert list(TimeEntry.objects.values_list("external_id", "duration_seconds", "notes")) == [
        (edited["id"], 1200, "longer")
    ]


def test_report_api_rereads_the_days_since_an_old_cursor_in_31_day_ranges(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    conn = clockify_connection(cf)
    cursor = timezone.now() - dt.timedelta(days=70)
    TrackerConnection.objects.filter(pk=conn.pk).update(
        cursor=cursor,
        window_checked_at=timezone.now(),  # the window is not due
    )
    result = run(conn)
    since = (cursor - dt.timedelta(minutes=30)).date()
    starts = [r.body["dateRangeStart"][:10] for r in cf.requests]
    assert starts == [
        str(since),
        str(since + dt.timedelta(days=31)),
        str(since + dt.timedelta(days=62)),
    ]
    assert (result.status, result.pages) == (RunStatus.SUCCEEDED, 3)
    assert reload(conn).window_checked_at < result.started_at  # not a window read


def test_toggl_me_reads_the_window_when_the_cursor_is_older_than_toggl_reaches(firm, toggl_api):
    tg = toggl_api
    toggl_firm(tg)
    tg.add_entry(user_id=42, project_id=193791, start=at(9), seconds=600)
    conn = toggl_connection(tg, options={"api": "me"})
    TrackerConnection.objects.filter(pk=conn.pk).update(
        cursor=timezone.now() - dt.timedelta(days=100), window_checked_at=timezone.now()
    )
    result = run(conn)
    asked = [r for r in tg.requests if r.path.endswith("/me/time_entries")]
    assert [set(r.query) for r in asked] == [{"meta", "start_date", "end_date"}] * 2
    assert asked[0].query["start_date"][:10] == str(today() - dt.timedelta(days=45))
    assert result.created == 1
    assert result.error_messages == [
        "the last successful run is older than 90 days, the furthest back the tracker lists "
        "changes: the last 45 days were read instead"
    ]


def test_clockify_429_without_retry_after_backs_off(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    cf.add_entry(user_id=hex_id(0xA1), project_id=hex_id(0xB1), start=at(9), seconds=600)
    cf.fail_next(2, status=429)
    result = run(clockify_connection(cf))
    assert (result.status, result.created) == (RunStatus.SUCCEEDED, 1)


def test_clockify_rate_limit_that_persists_defers(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    cf.fail_next(10, status=429)
    conn = clockify_connection(cf)
    result = run(conn)
    assert result.status == RunStatus.RATE_LIMITED
    assert reload(conn).retry_after is not None


def test_clockify_bad_key_stops_the_connection(firm, clockify_api):
    cf = clockify_api
    conn = clockify_connection(cf)
    cf.api_key = "revoked"
    result = run(conn)
    conn = reload(conn)
    assert conn.status == Status.STOPPED
    assert conn.status_reason == (
        "the tracker refused the token: Clockify refused the request: HTTP 401: Full "
        "authentication is required to access this resource (code 1000). Save a new token to "
        "resume."
    )
    assert result.status == RunStatus.FAILED


# --- Toggl ---------------------------------------------------------------------------------------


def toggl_firm(tg):
    tg.add_user(42, "Ana Pereira", "ana@example.com")
    tg.add_user(43, "Ben Okafor", "ben@example.com")
    tg.add_project(193791, "Website", "Acme")


def toggl_connection(tg, **fields):
    return connect(
        "toggl",
        account_id=str(tg.workspace_id),
        token=tg.token,
        base_url=tg.api_url,
        reports_url=tg.reports_url,
        **fields,
    )


def test_toggl_reports_follow_next_id_headers_to_the_end(firm, toggl_api):
    tg = toggl_api
    toggl_firm(tg)
    made = [
        tg.add_entry(
            user_id=42 + n % 2,
            project_id=193791,
            start=at(7) + dt.timedelta(minutes=n),
            seconds=300,
            description=f"n{n}",
        )
        for n in range(120)
    ]
    conn = toggl_connection(tg, options={"chunk_days": 60, "page_size": 50})

    result = run(conn)

    searches = [r for r in tg.requests if r.path.endswith("/search/time_entries")]
    assert [(r.body.get("first_id"), r.body.get("first_row_number")) for r in searches] == [
        (None, None),
        (made[50]["id"], 51),
        (made[100]["id"], 101),
    ]
    assert (result.pages, result.created) == (3, 120)
    entry = TimeEntry.objects.get(notes="n3")
    assert (entry.person, entry.project, entry.duration_seconds, entry.start_time) == (
        firm["ben"],
        firm["website"],
        300,
        dt.time(7, 3),
    )
    # Emails come from the workspace's users, asked for once.
    assert [r.path for r in tg.requests if r.path.endswith("/users")] == [
        f"/api/v9/workspaces/{tg.workspace_id}/users"
    ]


def test_toggl_me_since_reports_edits_and_deletions(firm, toggl_api):
    tg = toggl_api
    toggl_firm(tg)
    kept = tg.add_entry(user_id=42, project_id=193791, start=at(9), seconds=600)
    gone = tg.add_entry(user_id=42, project_id=193791, start=at(10), seconds=600)
    tg.add_entry(user_id=42, project_id=193791, start=at(11), seconds=None)  # running
    conn = toggl_connection(tg, options={"api": "me"})
    first = run(conn)
    assert (first.created, first.running_skipped) == (2, 1)

    tg.edit_entry(kept["id"], description="edited")
    tg.delete_entry(gone["id"])
    tg.requests.clear()
    second = run(conn)  # the window is not due: the deletion comes from `since` itself

    [asked] = tg.requests
    assert asked.path == "/api/v9/me/time_entries"
    assert asked.query == {
        "meta": "true",
        "since": str(int((first.started_at - dt.timedelta(minutes=30)).timestamp())),
    }
    assert (second.updated, second.deleted) == (1, 1)
    assert list(TimeEntry.objects.values_list("external_id", "notes")) == [
        (str(kept["id"]), "edited")
    ]


def test_toggl_quota_402_defers_until_the_hint(firm, toggl_api):
    tg = toggl_api
    toggl_firm(tg)
    tg.add_entry(user_id=42, project_id=193791, start=at(9), seconds=600)
    tg.hourly_quota = 0
    conn = toggl_connection(tg)

    result = run(conn)

    assert result.status == RunStatus.RATE_LIMITED
    assert result.error_messages == ["Toggl quota used up: retry after 1800 s"]
    conn = reload(conn)
    assert 1790 <= (conn.retry_after - result.started_at).total_seconds() <= 1820
    assert conn.status == Status.ACTIVE

    tg.hourly_quota = None
    tg.fail_next(1, status=402, retry_after=1)  # a short hint is waited out
    assert run(conn).created == 1


def test_toggl_bad_token_answers_403_and_stops(firm, toggl_api):
    tg = toggl_api
    conn = toggl_connection(tg)
    tg.token = "rotated-at-toggl"
    result = run(conn)
    assert (result.status, reload(conn).status) == (RunStatus.FAILED, Status.STOPPED)
    assert reload(conn).status_reason == (
        "the tracker refused the token: Toggl refused the token: HTTP 403 "
        "'Incorrect username and/or password'. Save a new token to resume."
    )


# --- announcing to billing, queries ---------------------------------------------------------------


def test_each_page_is_announced_through_the_queue_in_its_own_transaction(
    firm, harvest_api, monkeypatch
):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    fake = harvest_api
    harvest_people(fake)
    for n in range(7):
        fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}")
    conn = harvest_connection(fake, options={"page_size": 5})
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    result = run(conn)

    assert OrmQ.objects.count() == 2  # one announcement per page that changed something
    assert TimeEntry.objects.filter(classification__isnull=False).count() == 0  # not yet
    entries_imported.connect(receiver)
    try:
        ids = sorted(TimeEntry.objects.values_list("id", flat=True))
        tasks.announce_synced_entries(
            entry_ids=ids, frozen_entry_ids=[], sync_run_id=result.pk, batch_id=None
        )
    finally:
        entries_imported.disconnect(receiver)
    assert received == [
        {
            "signal": entries_imported,
            "batch": None,
            "entry_ids": ids,
            "frozen_entry_ids": [],
            "sync_run_id": result.pk,
        }
    ]
    assert TimeEntry.objects.filter(classification__isnull=False).count() == 7


def test_entries_are_classified_after_a_sync(firm, harvest_api):
    harvest_people(harvest_api)
    harvest_api.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    run(harvest_connection(harvest_api))
    assert TimeEntry.objects.get().classification.category.key == "development"


def test_queries_per_page_do_not_grow_with_entries(firm, harvest_api, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    fake = harvest_api
    harvest_people(fake)

    def queries_for(pages, per_page):
        TimeEntry.all_objects.all().delete()
        SyncRun.objects.all().delete()
        ImportBatch.objects.all().delete()
        fake.entries.clear()
        for n in range(pages * per_page):
            fake.add_entry(
                user_id=101 + n % 2, project_id=201, spent_date=DAY, hours="1", notes=f"n{n}"
            )
        conn = TrackerConnection.objects.filter(kind="harvest").first() or harvest_connection(fake)
        TrackerConnection.objects.filter(pk=conn.pk).update(
            cursor=None, options={"page_size": per_page}
        )
        with CaptureQueriesContext(connection) as queries:
            result = run(conn)
        assert result.created == pages * per_page
        return len(queries)

    queries_for(1, 2)  # the first run also creates the mappings of the tracker's users
    three, five, five_large = queries_for(3, 10), queries_for(5, 10), queries_for(5, 400)
    per_page = (five - three) // 2
    assert five - three == 2 * per_page
    assert five_large == five  # 40 times the entries per page, the same queries
    assert per_page <= 12


# --- schedule, command, task ----------------------------------------------------------------------


def test_schedule_is_created_once_hourly(db):
    call_command("setup_sync_schedule")
    first = Schedule.objects.get(name="sync-time-entries")
    assert (first.func, first.schedule_type, first.repeats) == (
        "timesheets.tasks.sync_all_connections",
        Schedule.HOURLY,
        -1,
    )
    Schedule.objects.filter(pk=first.pk).update(next_run=first.next_run + dt.timedelta(hours=1))
    Schedule.objects.create(name="sync-time-entries", func="x", schedule_type=Schedule.ONCE)
    call_command("setup_sync_schedule")
    [again] = Schedule.objects.filter(name="sync-time-entries")
    assert (again.pk, again.func, again.schedule_type) == (first.pk, first.func, Schedule.HOURLY)
    assert again.next_run == first.next_run + dt.timedelta(hours=1)  # not reset to now
    assert settings.Q_CLUSTER["catch_up"] is False  # no catch-up storm after downtime


def test_schedule_enqueues_the_due_connections_only(firm, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    kwargs = {"kind": "harvest", "account_id": "1", "token_encrypted": "x"}
    due = TrackerConnection.objects.create(name="due", **kwargs)
    TrackerConnection.objects.create(name="off", is_enabled=False, **kwargs)
    TrackerConnection.objects.create(name="stopped", status=Status.STOPPED, **kwargs)
    TrackerConnection.objects.create(
        name="waiting", retry_after=timezone.now() + dt.timedelta(minutes=5), **kwargs
    )
    failing = TrackerConnection.objects.create(name="failing", status=Status.FAILING, **kwargs)
    assert tasks.sync_all_connections() == 2
    assert OrmQ.objects.count() == 2
    assert set(sync.due_connections()) == {due, failing}


def test_command_syncs_one_connection(firm, harvest_api, capsys):
    harvest_people(harvest_api)
    harvest_api.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    conn = harvest_connection(harvest_api)
    call_command("sync", "--connection", str(conn.pk))
    assert capsys.readouterr().out == (
        "Harvest: succeeded; 1 pages, 1 fetched, 1 created, 0 updated, 0 deleted, 0 unchanged\n"
    )
    assert SyncRun.objects.get().trigger == SyncRun.Trigger.COMMAND
    with pytest.raises(CommandError, match="no tracker connection with id 999999"):
        call_command("sync", "--connection", "999999")


def test_command_fails_for_a_stopped_connection(firm, harvest_api, capsys):
    conn = harvest_connection(harvest_api)
    harvest_api.token = "rotated-at-harvest"
    with pytest.raises(CommandError, match="1 of 1 connection"):
        call_command("sync", "--connection", str(conn.pk))
    assert "Harvest: failed;" in capsys.readouterr().out
    requests_before = len(harvest_api.requests)
    with pytest.raises(CommandError, match="1 of 1 connection"):
        call_command("sync", "--connection", str(conn.pk))
    assert "Harvest is stopped: the tracker refused the token" in capsys.readouterr().err
    assert len(harvest_api.requests) == requests_before  # refused before any request


def test_task_runs_a_sync_and_tolerates_a_stopped_connection(firm, harvest_api):
    harvest_people(harvest_api)
    conn = harvest_connection(harvest_api)
    assert tasks.sync_connection_task(conn.pk) == RunStatus.SUCCEEDED
    TrackerConnection.objects.filter(pk=conn.pk).update(status=Status.STOPPED)
    assert tasks.sync_connection_task(conn.pk) == "not started"
    assert tasks.sync_connection_task(999999) == "not started"


# --- options and adapters -----------------------------------------------------------------------


def test_options_are_checked():
    with pytest.raises(sync.ConnectionMisconfigured) as raised:
        sync.sync_options(
            kind="clockify",
            options={"api": "v9", "page_size": 5000, "zone": "x", "timezone": "Mars/Base"},
        )
    assert str(raised.value) == (
        "invalid options: unknown option 'zone'; api must be one of reports, user, not 'v9'; "
        "page_size must be at most 1000; unknown timezone 'Mars/Base'"
    )
    defaults = sync.sync_options(kind="toggl", options={})
    # Toggl's largest page by default: every page is a request of an hourly quota.
    assert (defaults.api, defaults.page_size, defaults.chunk_days) == ("reports", 1000, 31)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1H30M", 5400), ("PT45S", 45), ("P1DT2H", 93600), ("PT0.5S", 1), ("PT1M0.4S", 60)],
)
def test_iso_durations(text, seconds):
    assert clockify.iso_duration_seconds(text) == seconds


def test_bad_iso_duration_is_refused():
    with pytest.raises(ValueError, match="not an ISO 8601 duration"):
        clockify.iso_duration_seconds("1:30")


def test_adapters_read_money_as_decimal(toggl_api, clockify_api):
    tg = toggl_api
    toggl_firm(tg)
    tg.add_entry(user_id=42, project_id=193791, start=at(9), seconds=600, rate_cents=10550)
    client = toggl.TogglClient(api_token=tg.token, reports_url=tg.reports_url)
    [[entry]] = list(client.report_pages(str(tg.workspace_id), start_date=DAY, end_date=DAY))
    assert (entry.hourly_rate, entry.currency) == (D("105.50"), "USD")
    cf = clockify_api
    clockify_firm(cf)
    cf.add_entry(user_id=hex_id(0xA1), project_id=None, start=at(9), seconds=60, rate_cents=10500)
    cf_client = clockify.ClockifyClient(
        api_key=cf.api_key,
        workspace_id=cf.workspace_id,
        base_url=cf.core_url,
        reports_url=cf.reports_url,
    )
    [[core]] = list(
        cf_client.user_time_entry_pages(
            clockify.ClockifyUser(hex_id(0xA1), "Ana", "ana@example.com", "ACTIVE"),
            start=at(0),
            end=at(23),
        )
    )
    assert (core.hourly_rate, core.project_id, core.duration_seconds) == (D("105"), "", 60)


def test_entry_without_project_waits_for_a_mapping(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    cf.add_entry(user_id=hex_id(0xA1), project_id=None, start=at(9), seconds=600)
    conn = clockify_connection(cf)
    assert run(conn).held == 1
    no_project = ExternalProject.objects.get(connection=conn)
    assert (no_project.external_id, no_project.name) == ("", "(no project)")
    no_project.project = firm["website"]
    no_project.save()
    assert run(conn).created == 1


# --- admin ----------------------------------------------------------------------------------------


def test_token_is_write_only_in_the_admin(
    admin_client, db, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    add_url = reverse("admin:timesheets_trackerconnection_add")
    form = {
        "name": "Northwind Harvest",
        "kind": "harvest",
        "account_id": "4242",
        "token": "pat-secret-123",
        "is_enabled": "on",
        "options": "{}",
        "base_url": "",
        "reports_url": "",
        "sync_from": "",
        "window_days": "45",
        "window_every_hours": "1",
        "overlap_minutes": "30",
    }
    response = admin_client.post(add_url, form)
    assert response.status_code == 302
    conn = TrackerConnection.objects.get()
    assert conn.token_encrypted and "pat-secret-123" not in conn.token_encrypted
    assert decrypt(conn.token_encrypted) == "pat-secret-123"

    change_url = reverse("admin:timesheets_trackerconnection_change", args=[conn.pk])
    page = admin_client.get(change_url).content.decode()
    assert "pat-secret-123" not in page
    assert conn.token_encrypted not in page
    assert "saved on" in page and "(encrypted; never shown)" in page

    response = admin_client.post(change_url, {**form, "token": "", "name": "Renamed"})
    assert response.status_code == 302
    conn.refresh_from_db()
    assert (conn.name, decrypt(conn.token_encrypted)) == ("Renamed", "pat-secret-123")

    bad = admin_client.post(change_url, {**form, "options": '{"api": "reports"}'})
    assert "api must be one of v2" in bad.content.decode()
    missing = admin_client.post(add_url, {**form, "name": "Other", "token": ""})
    assert "A new connection needs its API token." in missing.content.decode()

    changelist = reverse("admin:timesheets_trackerconnection_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            changelist, {"action": "sync_now", "_selected_action": [conn.pk]}
        )
    assert response.status_code == 302
    assert OrmQ.objects.count() == 1


def test_sync_runs_are_read_only_in_the_admin(admin_client, firm, harvest_api):
    harvest_people(harvest_api)
    harvest_api.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    result = run(harvest_connection(harvest_api))
    listing = admin_client.get(reverse("admin:timesheets_syncrun_changelist"))
    assert listing.status_code == 200
    assert "Succeeded" in listing.content.decode()
    change_url = reverse("admin:timesheets_syncrun_change", args=[result.pk])
    assert admin_client.post(change_url, {"status": "failed"}).status_code == 403
    assert admin_client.get(reverse("admin:timesheets_syncrun_add")).status_code == 403
    assert SyncRun.objects.get().status == RunStatus.SUCCEEDED


def test_deleted_entries_are_hidden_in_the_entry_list_unless_asked_for(
    admin_client, firm, harvest_api
):
    harvest_people(harvest_api)
    gone = harvest_api.add_entry(
        user_id=101, project_id=201, spent_date=DAY, hours="1", notes="removed at harvest"
    )
    conn = harvest_connection(harvest_api)
    run(conn)
    harvest_api.delete_entry(gone["id"])
    run(conn, window=True)
    url = reverse("admin:timesheets_timeentry_changelist")
    assert "removed at harvest" not in admin_client.get(url).content.decode()
    assert "removed at harvest" in admin_client.get(url + "?at_source=deleted").content.decode()


def test_timezone_option_decides_the_date_of_report_entries(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)
    cf.add_entry(user_id=hex_id(0xA1), project_id=hex_id(0xB1), start=at(23, 30), seconds=600)
    run(clockify_connection(cf, options={"timezone": "Asia/Tokyo"}))  # UTC+9, no DST
    entry = TimeEntry.objects.get()
    assert (entry.date, entry.start_time) == (DAY + dt.timedelta(days=1), dt.time(8, 30))


def test_sync_admin_pages_render(admin_client, firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)
    fake.add_user(103, "Cleo", "Marsh", "cleo@elsewhere.example")
    fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    gone = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="2")
    fake.add_entry(user_id=103, project_id=201, spent_date=DAY, hours="1", notes="waits")
    conn = harvest_connection(fake)
    result = run(conn)
    fake.delete_entry(gone["id"])
    run(conn, window=True)
    deleted = TimeEntry.all_objects.get(external_id=str(gone["id"]))
    pages = [
        reverse("admin:timesheets_trackerconnection_changelist"),
        reverse("admin:timesheets_trackerconnection_add"),
        reverse("admin:timesheets_trackerconnection_change", args=[conn.pk]),
        reverse("admin:timesheets_syncrun_changelist"),
        reverse("admin:timesheets_syncrun_change", args=[result.pk]),
        reverse("admin:timesheets_externalperson_changelist") + "?mapped=no",
        reverse("admin:timesheets_externalperson_change", args=[ExternalPerson.objects.first().pk]),
        reverse("admin:timesheets_externalproject_changelist"),
        reverse("admin:timesheets_externalproject_change", args=[ExternalProject.objects.get().pk]),
        reverse("admin:timesheets_heldentry_changelist"),
        reverse("admin:timesheets_timeentry_change", args=[deleted.pk]),
    ]
    for url in pages:
        assert admin_client.get(url).status_code == 200, url
    waiting = admin_client.get(reverse("admin:timesheets_heldentry_changelist")).content.decode()
    assert "waits" in waiting and "1:00" in waiting


# --- the tracker's own billing state (billing semantics 10.2, issue 10 defect 5) -----------------


def tracker_state(external_id):
    entry = TimeEntry.objects.get(external_id=str(external_id))
    return entry.tracker_invoiced, entry.tracker_approved


def test_harvest_invoiced_and_approved_state_is_stored(firm, harvest_api):
    fake = harvest_api
    harvest_people(fake)

    def entry(**state):
        return fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1", **state)

    plain = entry()
    billed = entry(is_billed=True)
    on_invoice = entry(invoice={"id": 13150403, "number": "1001"})
    locked_invoiced = entry(
        is_locked=True, locked_reason="Item Invoiced and Approved and Locked for this Time Period"
    )
    closed = entry(is_closed=True)
    locked_approved = entry(
        is_locked=True, locked_reason="Item Approved and Locked for this Time Period"
    )
    conn = harvest_connection(fake)

    assert run(conn).created == 6

    assert tracker_state(plain["id"]) == (False, False)  # Harvest always says: not approved
    assert tracker_state(billed["id"]) == (True, False)
    assert tracker_state(on_invoice["id"]) == (True, False)
    assert tracker_state(locked_invoiced["id"]) == (True, True)
    assert tracker_state(closed["id"]) == (False, True)
    assert tracker_state(locked_approved["id"]) == (False, True)

    # Invoiced in Harvest after the first sync: an update of the same entry.
    fake.edit_entry(plain["id"], is_billed=True, is_closed=True)
    result = run(conn, window=True)
    assert result.updated == 1
    assert tracker_state(plain["id"]) == (True, True)


def test_harvest_invoicing_of_an_entry_on_an_approved_invoice_is_recorded(
    firm, harvest_api, approver
):
    fake = harvest_api
    harvest_people(fake)
    made = fake.add_entry(user_id=101, project_id=201, spent_date=DAY, hours="1")
    conn = harvest_connection(fake)
    run(conn)
    period = Period.month(f"{DAY:%Y-%m}")
    approve_invoice(invoice=draft_invoices(period=period).invoices[0], user=approver)

    fake.edit_entry(made["id"], is_billed=True)
    result = run(conn, window=True)

    assert result.frozen == 1
    entry = TimeEntry.objects.get(external_id=str(made["id"]))
    assert entry.tracker_invoiced is False  # as billed here, until the invoice is voided
    assert entry.pending_source_change["tracker_invoiced"] is True
    assert entry.pending_source_change["tracker_approved"] is False


def test_clockify_invoiced_and_approval_state_is_stored(firm, clockify_api):
    cf = clockify_api
    clockify_firm(cf)

    def entry(hour, **state):
        return cf.add_entry(
            user_id=hex_id(0xA1), project_id=hex_id(0xB1), start=at(hour), seconds=600, **state
        )

    plain = entry(8)
    invoiced = entry(9, invoiced=True)
    approved = entry(10, approval_status="APPROVED")
    pending = entry(11, approval_status="PENDING")
    for api in ("reports", "user"):
        TimeEntry.objects.all().delete()
        conn = clockify_connection(cf, name=f"Clockify {api}", options={"api": api})

        assert run(conn).created == 4

        assert tracker_state(plain["id"]) == (False, None)  # the answer does not say
        assert tracker_state(invoiced["id"]) == (True, None)
        assert tracker_state(approved["id"]) == (False, True)
        assert tracker_state(pending["id"]) == (False, False)


def test_toggl_entries_have_no_tracker_state_and_keep_their_hash(firm, toggl_api):
    tg = toggl_api
    toggl_firm(tg)
    made = tg.add_entry(user_id=42, project_id=193791, start=at(9), seconds=600)
    conn = toggl_connection(tg)
    run(conn)

    entry = TimeEntry.objects.get(external_id=str(made["id"]))
    assert (entry.tracker_invoiced, entry.tracker_approved) == (False, None)
    # The defaults are left out of the hashed content: the hash is what it was before the
    # fields existed.
    old_content = {
        "person_id": entry.person_id,
        "client_id": entry.client_id,
        "project_id": entry.project_id,
        "task": entry.task,
        "date": entry.date.isoformat(),
        "start_time": entry.start_time.isoformat(),
        "duration_seconds": 600,
        "notes": entry.notes,
        "tracker_billable": True,
    }
    assert entry.content_hash == content_hash(old_content)


def test_entries_held_before_the_tracker_state_existed_still_load(firm, harvest_api):
    held = RemoteEntry(
        external_id="1",
        user=RemoteUser("101"),
        project=RemoteProject("201"),
        task="Dev",
        date=DAY,
        start_time=None,
        duration_seconds=60,
        notes="",
        billable=True,
    ).to_json()
    del held["invoiced"], held["approved"]  # as HeldEntry.data was written before

    entry = RemoteEntry.from_json(held)

    assert (entry.invoiced, entry.approved) == (False, None)


def test_adapters_read_the_tracker_state():
    raw = {
        "id": 1,
        "spent_date": "2026-10-01",
        "user": {"id": 2, "name": "Kim"},
        "hours": 1,
        "created_at": "2026-10-01T10:00:00Z",
        "updated_at": "2026-10-01T10:00:00Z",
    }
    assert (harvest._entry(raw).invoiced, harvest._entry(raw).approved) == (False, False)
    locked = {**raw, "is_locked": True, "locked_reason": "Item Invoiced and Approved and Locked"}
    assert (harvest._entry(locked).invoiced, harvest._entry(locked).approved) == (True, True)
    # Locked for another reason (a closed period): neither invoiced nor approved.
    closed_period = {**raw, "is_locked": True, "locked_reason": "Locked for this Time Period"}
    assert (harvest._entry(closed_period).invoiced, harvest._entry(closed_period).approved) == (
        False,
        False,
    )
    report = {
        "_id": "e1",
        "userId": "u",
        "timeInterval": {"start": "2026-10-01T09:00:00Z", "end": None, "duration": None},
    }
    assert (clockify._report_entry(report).invoiced, clockify._report_entry(report).approved) == (
        False,
        None,
    )
    # approvalRequestId alone is not approval: the entry is in a request not yet decided.
    requested = {**report, "approvalRequestId": "r1", "type": "BREAK"}
    assert clockify._report_entry(requested).approved is None
    assert clockify._report_entry(requested).type == "BREAK"
