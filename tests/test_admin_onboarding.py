"""Onboarding in the admin (issue 11 item 4): an uploaded file, or a sync's unmapped users and
projects, that names clients, projects or people the firm does not know is not imported
straight away: the admin lists what it would create, with the defaults, and creates it and
imports only on "Create and import" (the same creation as import_entries --create-missing).
What it creates is then in export_rules' file. Django's test client against the real admin,
on PostgreSQL."""

import re
from io import StringIO

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django_q.models import OrmQ

from tests.test_csv_import import northwind  # noqa: F401  (the fixture, used by name)
from tests.test_import_create_missing import new_firm_file
from tests.test_sync import (  # noqa: F401  (fixtures, used by name)
    DAY,
    firm,
    harvest_api,
    harvest_connection,
    harvest_people,
    harvest_server,
    run,
    sync_settings,
)
from timesheets import tasks
from timesheets.models import (
    Client,
    ExternalPerson,
    ExternalProject,
    HeldEntry,
    ImportBatch,
    ImportJob,
    ImportJobChunk,
    Person,
    Project,
    TimeEntry,
    TrackerConnection,
)

UPLOAD_URL = "admin:timesheets_importbatch_import_csv"
NEW_RECORDS = [
    ("Client", "Newco GmbH"),
    ("Project", "Newco GmbH / Onboarding"),
    ("Project", "Newco GmbH / Audit"),
    ("Project", "Acme Legal LLP / Appeal"),
    ("Person", "Zoe Park <zoe@newclient.example>"),
]


def counts():
    return (
        Client.objects.count(),
        Project.objects.count(),
        Person.objects.count(),
        TimeEntry.objects.count(),
        ImportBatch.objects.count(),
    )


def review_rows(page):
    """The review table's (kind, name) rows, read from the page's HTML."""
    html = page.content.decode()
    return [
        (kind, name.replace("&lt;", "<").replace("&gt;", ">"))
        for kind, name in re.findall(r'<tr class="review-\w+"><td>(\w+)</td><td>([^<]*)</td>', html)
    ]


def upload(admin_client, content, name="t.csv"):
    return admin_client.post(
        reverse(UPLOAD_URL), {"files": [SimpleUploadedFile(name, content)]}, follow=True
    )


def test_an_upload_naming_unknowns_lists_them_and_creates_nothing(northwind, admin_client):  # noqa: F811
    before = counts()
    page = upload(admin_client, new_firm_file())
    assert page.status_code == 200
    assert review_rows(page) == NEW_RECORDS
    assert b"Waiting for review" in page.content
    assert b"billed hourly, at the firm&#x27;s rates" in page.content  # the defaults shown
    assert b"Create and import" in page.content
    assert counts() == before  # nothing created, nothing imported
    job = ImportJob.objects.get()
    assert job.chunks.exists()  # the file kept for the confirmation
    # The import batches list links the file waiting for review.
    listing = admin_client.get(reverse("admin:timesheets_importbatch_changelist"))
    assert [j.pk for j in listing.context["waiting_reviews"]] == [job.pk]


def test_confirming_creates_them_and_imports_and_a_second_upload_creates_nothing_more(
    northwind,  # noqa: F811
    admin_client,
):
    clients, projects, people, _, _ = counts()
    upload(admin_client, new_firm_file())
    job = ImportJob.objects.get()
    done = admin_client.post(
        reverse("admin:timesheets_importbatch_import_review", args=[job.pk]),
        {"confirm": "Create and import"},
        follow=True,
    )
    assert done.status_code == 200
    assert counts() == (clients + 1, projects + 3, people + 1, 4, 1)
    newco = Client.objects.get(name="Newco GmbH")
    assert sorted(newco.projects.values_list("name", "code", "billing")) == [
        ("Audit", "", "hourly"),
        ("Onboarding", "", "hourly"),
    ]
    assert Person.objects.get(email="zoe@newclient.example").name == "Zoe Park"
    assert TimeEntry.objects.filter(client=newco).count() == 2
    job.refresh_from_db()
    assert job.status == "succeeded" and not ImportJobChunk.objects.exists()
    assert "created 1 client (Newco GmbH)" in job.summary
    assert b"created 1 client (Newco GmbH)" in done.content  # the success message
    listing = admin_client.get(reverse("admin:timesheets_importbatch_changelist"))
    assert listing.context["waiting_reviews"] == []

    # The same file again: everything known, so it imports at once (all unchanged).
    again = upload(admin_client, new_firm_file())
    assert review_rows(again) == []
    assert counts() == (clients + 1, projects + 3, people + 1, 4, 2)
    assert ImportBatch.objects.order_by("-pk").first().unchanged == 4
    assert ImportJob.objects.count() == 1

    # A second confirmation of the finished review does nothing.
    admin_client.post(reverse("admin:timesheets_importbatch_import_review", args=[job.pk]), {})
    assert counts() == (clients + 1, projects + 3, people + 1, 4, 2)


def test_cancel_drops_the_file_and_creates_nothing(northwind, admin_client):  # noqa: F811
    before = counts()
    upload(admin_client, new_firm_file())
    job = ImportJob.objects.get()
    admin_client.post(
        reverse("admin:timesheets_importbatch_import_review", args=[job.pk]), {"cancel": "1"}
    )
    assert not ImportJob.objects.exists() and not ImportJobChunk.objects.exists()
    assert counts() == before


def test_a_background_upload_waits_for_review_too(northwind, admin_client, settings):  # noqa: F811
    content = new_firm_file()
    settings.IMPORT_BACKGROUND_BYTES = len(content) - 1
    before = counts()
    upload(admin_client, content)
    job = ImportJob.objects.get()
    assert job.status == "queued"
    assert tasks.import_job_task(job.pk) == "failed"  # held: nobody has reviewed the list
    assert counts() == before
    page = admin_client.get(reverse("admin:timesheets_importbatch_import_job", args=[job.pk]))
    assert review_rows(page) == NEW_RECORDS
    assert tasks.import_job_task(job.pk) == "nothing to do"  # a redelivery creates nothing

    OrmQ.objects.all().delete()
    admin_client.post(
        reverse("admin:timesheets_importbatch_import_review", args=[job.pk]), {"confirm": "1"}
    )
    job.refresh_from_db()
    assert job.status == "queued" and counts() == before  # queued again, for the worker
    assert tasks.import_job_task(job.pk) == "succeeded"
    assert counts()[3:] == (4, 1)
    assert Client.objects.filter(name="Newco GmbH").exists()


def test_export_rules_includes_what_the_upload_created(northwind, admin_client):  # noqa: F811
    upload(admin_client, new_firm_file())
    job = ImportJob.objects.get()
    admin_client.post(
        reverse("admin:timesheets_importbatch_import_review", args=[job.pk]), {"confirm": "1"}
    )
    out = StringIO()
    call_command("export_rules", stdout=out)
    document = yaml.safe_load(out.getvalue())
    clients = {client["name"]: client for client in document["clients"]}
    assert [
        (p.get("code"), p["name"], p["billing"]) for p in clients["Newco GmbH"]["projects"]
    ] == [
        (None, "Audit", "hourly"),
        (None, "Onboarding", "hourly"),
    ]
    assert "Appeal" in [p["name"] for p in clients["Acme Legal LLP"]["projects"]]
    [zoe] = [p for p in document["people"] if p["email"] == "zoe@newclient.example"]
    assert zoe["name"] == "Zoe Park"


@pytest.fixture
def tracker(db):
    conn = TrackerConnection.objects.create(
        name="Clockify", kind="clockify", account_id="ws1", token_encrypted="x"
    )
    ExternalPerson.objects.create(
        connection=conn, external_id="u1", name="Zoe Park", email="zoe@newclient.example"
    )
    ExternalProject.objects.create(
        connection=conn, external_id="p1", name="Onboarding", client_name="Newco GmbH"
    )
    ExternalProject.objects.create(connection=conn, external_id="p2", name="Admin", client_name="")
    return conn


def test_a_syncs_unmapped_projects_are_reviewed_then_created_and_synced(
    tracker, admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    url = reverse("admin:timesheets_externalproject_changelist")
    ids = list(ExternalProject.objects.values_list("pk", flat=True))
    chosen = {"action": "create_for_selected", "_selected_action": ids}
    page = admin_client.post(url, chosen)
    assert review_rows(page) == [("Client", "Newco GmbH"), ("Project", "Newco GmbH / Onboarding")]
    assert b"Admin: no client in the tracker (internal time)" in page.content
    assert (Client.objects.count(), Project.objects.count()) == (0, 0)
    assert ExternalProject.objects.filter(project__isnull=False).count() == 0

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {**chosen, "post": "yes"})
    project = Project.objects.get()
    assert (project.client.name, project.name, project.billing) == (
        "Newco GmbH",
        "Onboarding",
        "hourly",
    )
    mapped = ExternalProject.objects.get(external_id="p1")
    assert (mapped.project, mapped.matched_by) == (project, "admin")
    assert ExternalProject.objects.get(external_id="p2").project is None
    [task] = OrmQ.objects.all()  # the connection synced again: its held entries are imported
    assert task.func() == "timesheets.tasks.sync_connection_task"
    assert task.task["args"] == (tracker.pk, "mapping")

    # Again: nothing more is created.
    admin_client.post(url, {**chosen, "post": "yes"})
    assert (Client.objects.count(), Project.objects.count()) == (1, 1)


def test_a_syncs_unmapped_people_are_created_by_email(tracker, admin_client, monkeypatch):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    url = reverse("admin:timesheets_externalperson_changelist")
    chosen = {
        "action": "create_for_selected",
        "_selected_action": list(ExternalPerson.objects.values_list("pk", flat=True)),
    }
    assert review_rows(admin_client.post(url, chosen)) == [
        ("Person", "Zoe Park <zoe@newclient.example>")
    ]
    assert not Person.objects.exists()
    admin_client.post(url, {**chosen, "post": "yes"})
    messages = [str(m) for m in admin_client.get(url).context["messages"]]
    assert messages == [
        "Created 1 person (Zoe Park <zoe@newclient.example>); 1 mapped, their waiting entries "
        "are synced now."
    ]
    assert ExternalPerson.objects.get().person == Person.objects.get(email="zoe@newclient.example")


def test_a_sync_waiting_for_unknowns_imports_once_they_are_created_in_the_admin(
    firm,  # noqa: F811
    harvest_api,  # noqa: F811
    admin_client,
    django_capture_on_commit_callbacks,
):
    """End to end against the fake Harvest: a person and a project the firm does not know make
    the sync hold their entries; the admin creates both in one step each, and the sync that
    follows imports the waiting entries under them."""
    fake = harvest_api
    harvest_people(fake)
    fake.add_user(103, "Cleo", "Marsh", "cleo@newclient.example")
    fake.add_project(202, "Patient portal", "UMB-PORTAL", 302, "Umbrella Health")
    for n in range(2):
        fake.add_entry(user_id=103, project_id=202, spent_date=DAY, hours="1", notes=f"c{n}")
    conn = harvest_connection(fake)
    assert (run(conn).held, TimeEntry.objects.count()) == (2, 0)

    for model, url in (
        (ExternalPerson, "admin:timesheets_externalperson_changelist"),
        (ExternalProject, "admin:timesheets_externalproject_changelist"),
    ):
        unmapped = model.objects.filter(connection=conn, external_id__in=["103", "202"])
        chosen = {
            "action": "create_for_selected",
            "_selected_action": list(unmapped.values_list("pk", flat=True)),
            "post": "yes",
        }
        with django_capture_on_commit_callbacks(execute=True):
            admin_client.post(reverse(url), chosen)

    cleo = Person.objects.get(email="cleo@newclient.example")
    portal = Project.objects.get(code="UMB-PORTAL")
    assert (cleo.name, portal.name, portal.client.name) == (
        "Cleo Marsh",
        "Patient portal",
        "Umbrella Health",
    )
    entries = TimeEntry.objects.filter(person=cleo, project=portal)
    assert entries.count() == 2
    assert not HeldEntry.objects.exists()


def test_confirming_needs_the_permission_to_add_what_is_created(northwind, client):  # noqa: F811
    from django.contrib.auth.models import Permission, User

    importer = User.objects.create_user("importer", password="x", is_staff=True)
    importer.user_permissions.add(*Permission.objects.filter(codename="add_importbatch"))
    client.force_login(importer)
    before = counts()
    upload(client, new_firm_file())
    job = ImportJob.objects.get()
    page = client.post(
        reverse("admin:timesheets_importbatch_import_review", args=[job.pk]),
        {"confirm": "1"},
        follow=True,
    )
    assert b"needs the permission to add each" in page.content
    assert counts() == before
    job.refresh_from_db()
    assert job.status == "failed" and job.chunks.exists()  # still waiting for review
