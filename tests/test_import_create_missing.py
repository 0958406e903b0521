"""import_entries --create-missing (issue 11, item 4): unknown clients, projects and people
(by email) are created from the file instead of refusing their rows; a refused file creates
nothing."""

import pytest
from django.core.management import call_command

from tests.test_csv_import import harvest_bytes, harvest_row, northwind, write_csv
from timesheets.importing import ImportRejected, import_file
from timesheets.models import Client, Person, Project, TimeEntry

__all__ = ["northwind"]  # the fixture, used by name

TOGGL_HEADER = [
    "User",
    "Email",
    "Client",
    "Project",
    "Task",
    "Description",
    "Billable",
    "Start date",
    "Start time",
    "Duration",
]


def toggl_row(**values):
    row = {
        "User": "Ana Pereira",
        "Email": "ana@northwind.example",
        "Client": "Acme Legal LLP",
        "Project": "Litigation support",
        "Task": "Meetings",
        "Description": "Client call",
        "Billable": "Yes",
        "Start date": "2026-10-01",
        "Start time": "09:00:00",
        "Duration": "00:30:00",
    }
    row.update(values)
    return [row[column] for column in TOGGL_HEADER]


def new_firm_file():
    return write_csv(
        TOGGL_HEADER,
        [
            toggl_row(),  # all known
            toggl_row(
                User="Zoe  Park",
                Email="zoe@newclient.example",
                Client="Newco GmbH",
                Project="Onboarding",
                **{"Start time": "10:00:00"},
            ),
            toggl_row(
                Email="zoe@newclient.example",
                Client="newco gmbh",  # the same new client, another spelling
                Project="Audit",
                **{"Start time": "11:00:00"},
            ),
            toggl_row(Project="Appeal", **{"Start time": "12:00:00"}),  # new project, old client
        ],
    )


def test_unknown_names_are_created_and_listed(northwind):
    with pytest.raises(ImportRejected):
        import_file(name="t.csv", content=new_firm_file())

    result = import_file(name="t.csv", content=new_firm_file(), create_missing=True)
    assert (result.rows, result.created) == (4, 4)
    assert result.summary() == (
        "toggl, 4 rows: 4 created, 0 updated, 0 unchanged; created 1 client (Newco GmbH), "
        "3 projects (Newco GmbH / Onboarding, Newco GmbH / Audit, Acme Legal LLP / Appeal), "
        "1 person (Zoe Park <zoe@newclient.example>) from the file"
    )
    newco = Client.objects.get(name="Newco GmbH")
    assert sorted(newco.projects.values_list("name", "billing")) == [
        ("Audit", "hourly"),
        ("Onboarding", "hourly"),
    ]
    assert Person.objects.get(email="zoe@newclient.example").name == "Zoe Park"
    assert TimeEntry.objects.filter(client=newco).count() == 2

    again = import_file(name="t.csv", content=new_firm_file(), create_missing=True)
    assert (again.unchanged, again.created_records.summary()) == (4, "")


def test_a_refused_file_creates_nothing(northwind):
    content = (
        new_firm_file() + write_csv(TOGGL_HEADER, [toggl_row(Duration="x")]).split(b"\r\n", 1)[1]
    )
    with pytest.raises(ImportRejected) as raised:
        import_file(name="t.csv", content=content, create_missing=True)
    assert [error.row for error in raised.value.errors] == [6]
    assert not Client.objects.filter(name="Newco GmbH").exists()
    assert not Project.objects.filter(name="Appeal").exists()
    assert not Person.objects.filter(email="zoe@newclient.example").exists()
    assert TimeEntry.objects.count() == 0


def test_harvest_people_without_an_email_are_still_refused(northwind):
    content = harvest_bytes(harvest_row(**{"First Name": "Nia", "Client": "Newco GmbH"}))
    with pytest.raises(ImportRejected) as raised:
        import_file(name="h.csv", content=content, create_missing=True)
    assert [(e.column, e.reason) for e in raised.value.errors] == [
        ("First Name/Last Name", "unknown person 'Nia Marsh'"),
        (
            "Project Code",
            "project code 'ACME-LIT' belongs to client 'Acme Legal LLP', not 'Newco GmbH'",
        ),
    ]
    assert not Client.objects.filter(name="Newco GmbH").exists()


def test_command_flag(northwind, tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_bytes(new_firm_file())
    call_command("import_entries", str(path), "--create-missing")
    out = capsys.readouterr().out
    assert "created 1 client (Newco GmbH)" in out
    assert TimeEntry.objects.count() == 4
