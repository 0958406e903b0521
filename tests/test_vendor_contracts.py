"""Each vendor's published example payloads (tests/fixtures/<vendor>/, sources in each README)
replayed through its adapter over real HTTP, as Zulip tests each webhook against recorded
payloads; and the shape fakes checked against the same examples, so a fake that drifts from
the published contract fails here rather than in production."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
import requests

from integrations import clockify, harvest, toggl
from integrations import quickbooks as qbo
from tests.fakes import published
from tests.fakes.clockify_server import clockify_server  # noqa: F401 - fixture
from tests.fakes.harvest_server import harvest_server  # noqa: F401 - fixture
from tests.fakes.quickbooks_server import quickbooks_fake  # noqa: F401 - fixture
from tests.fakes.replay_server import replay_server  # noqa: F401 - fixture
from tests.fakes.toggl_server import toggl_server  # noqa: F401 - fixture

NO_WAIT = {"sleep": lambda seconds: None, "max_retries": 1}


# --- Harvest v2 ------------------------------------------------------------------------------


def harvest_client(url: str, **kwargs) -> harvest.HarvestClient:
    return harvest.HarvestClient(
        token="t",
        account_id="1",
        user_agent="billables tests (ops@example.com)",
        base_url=url,
        **{**NO_WAIT, **kwargs},
    )


def test_harvest_time_entries_example_reads_as_published(replay_server):  # noqa: F811
    replay_server.record(
        "GET", "/time_entries", published.load("harvest", "time_entries_list.json")
    )

    [page] = harvest_client(replay_server.url).time_entry_pages()

    assert [e.id for e in page] == [636709355, 636708723, 636708574, 636707831]
    first, invoiced = page[0], page[1]
    assert (first.spent_date, first.hours, first.rounded_hours, first.billable_rate) == (
        dt.date(2017, 3, 2),
        D("2.11"),
        D("2.25"),
        D("100.0"),
    )
    assert (first.user_name, first.client_name, first.project_name, first.task_name) == (
        "Kim Allen",
        "ABC Corp",
        "Marketing Website",
        "Graphic Design",
    )
    assert (first.started_time, first.notes, first.project_code) == (
        "3:00pm",
        "Adding CSS styling",
        "",
    )
    # "Item Approved and Locked": approved, not invoiced; the second is on invoice 13150403.
    assert (first.approved, first.invoiced) == (True, False)
    assert (invoiced.invoice_id, invoiced.invoiced, invoiced.approved) == (13150403, True, True)
    assert first.updated_at == dt.datetime(2017, 6, 27, 16, 47, 14, tzinfo=dt.UTC)
    # Every documented header, on every request.
    [headers] = replay_server.headers_seen
    assert headers["authorization"] == "Bearer t"
    assert headers["harvest-account-id"] == "1"
    assert headers["user-agent"] == "billables tests (ops@example.com)"


def test_harvest_follows_the_published_cursor_link_verbatim(replay_server):  # noqa: F811
    first = published.load("harvest", "time_entries_list.json")
    cursor = published.load("harvest", "pagination_cursor_links.json")
    # The published cursor link, pointed at the replay fake's time entries.
    next_link = cursor["links"]["next"].replace(
        "https://api.harvestapp.com/v2/clients", "{url}/time_entries"
    )
    first.update({k: v for k, v in cursor.items() if k != "links"})
    first["links"]["next"] = next_link
    last = {**first, "time_entries": [], "links": {**first["links"], "next": None}}
    replay_server.record("GET", "/time_entries", first)
    replay_server.record("GET", "/time_entries", last)

    pages = list(harvest_client(replay_server.url).time_entry_pages())

    assert [len(p) for p in pages] == [4, 0]
    assert replay_server.requests[1].query == {
        "cursor": "eyJhZnRlciI6eyJpZCI6MzAwN319",
        "per_page": "2000",
        "ref": "next_cursor",
    }


def test_harvest_users_and_me_examples(replay_server):  # noqa: F811
    replay_server.record("GET", "/users", published.load("harvest", "users_list.json"))
    users = harvest_client(replay_server.url).users()
    assert [(u.id, u.name, u.email, u.is_active) for u in users][:2] == [
        (3230547, "Jim Allen", "jimallen@example.com", True),
        (1782959, "Kim Allen", "kimallen@example.com", True),
    ]


def test_harvest_current_user_example(replay_server):  # noqa: F811
    replay_server.record("GET", "/users/me", published.load("harvest", "users_me.json"))
    me = harvest_client(replay_server.url).current_user()
    assert (me.id, me.name, me.email, me.is_active) == (
        1782884,
        "Bob Powell",
        "bobpowell@example.com",
        True,
    )


def test_harvest_error_examples_become_named_errors(replay_server):  # noqa: F811
    replay_server.record(
        "GET", "/time_entries", published.load("harvest", "error_401.json"), status=401
    )
    with pytest.raises(harvest.HarvestAuthError, match="invalid_token"):
        list(harvest_client(replay_server.url).time_entry_pages())

    limited = published.load("harvest", "rate_limited_429.json")
    replay_server.record("GET", "/users", "", status=429, headers=limited["headers"])
    with pytest.raises(harvest.HarvestRateLimited) as raised:
        harvest_client(replay_server.url, max_wait_seconds=10).users()
    assert raised.value.retry_after == 15


def test_harvest_fake_serves_the_published_shapes(harvest_server):  # noqa: F811
    fake = harvest_server
    fake.add_user(1, "Ann", "Lee", "ann@example.com")
    fake.add_project(2, "Website", "W", 3, "Acme")
    fake.add_entry(user_id=1, project_id=2, spent_date="2026-01-05", hours="1.5")
    headers = {
        "Authorization": f"Bearer {fake.token}",
        "Harvest-Account-Id": fake.account_id,
        "User-Agent": "contract test (ops@example.com)",
    }
    body = requests.get(f"{fake.url}/time_entries", headers=headers, timeout=5).json()
    example = published.load("harvest", "time_entries_list.json")
    assert set(body) == set(example)
    assert set(body["links"]) == set(example["links"])
    assert set(body["time_entries"][0]) == set(example["time_entries"][0])
    users = requests.get(f"{fake.url}/users", headers=headers, timeout=5).json()
    assert set(users["users"][0]) == set(published.load("harvest", "users_list.json")["users"][0])
    me = requests.get(f"{fake.url}/users/me", headers=headers, timeout=5).json()
    assert set(me) == set(published.load("harvest", "users_me.json"))
    # What the docs say the fake must refuse: a page above 2000, no User-Agent.
    too_big = requests.get(
        f"{fake.url}/time_entries", params={"per_page": 2001}, headers=headers, timeout=5
    )
    assert too_big.status_code == 422
    anonymous = requests.get(
        f"{fake.url}/time_entries", headers={**headers, "User-Agent": ""}, timeout=5
    )
    assert anonymous.status_code == 400


# --- Clockify --------------------------------------------------------------------------------


def clockify_client(url: str) -> clockify.ClockifyClient:
    return clockify.ClockifyClient(
        api_key="k", workspace_id="ws", base_url=url, reports_url=url, **NO_WAIT
    )


def test_clockify_detailed_report_example(replay_server):  # noqa: F811
    replay_server.record(
        "POST",
        "/workspaces/ws/reports/detailed",
        published.load("clockify", "detailed_report.json"),
    )
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    [page] = clockify_client(replay_server.url).report_pages(
        start=start, end=start + dt.timedelta(days=31)
    )

    billable, internal = page
    assert (billable.id, billable.user_email, billable.project_name, billable.client_name) == (
        "64c777ddd3fcab07cfbb210c",
        "ann@example.com",
        "Website",
        "Acme",
    )
    assert (billable.duration_seconds, billable.billable, billable.type) == (3600, True, "REGULAR")
    # A project without a client: no client name, not a refusal.
    assert (internal.client_name, internal.duration_seconds, internal.billable) == ("", 1800, False)
    [request] = replay_server.requests
    assert request.body["detailedFilter"]["pageSize"] == clockify.MAX_REPORT_PAGE_SIZE
    assert replay_server.headers_seen[0]["x-api-key"] == "k"


def test_clockify_users_and_errors(replay_server):  # noqa: F811
    users = "/workspaces/ws/users"
    replay_server.record("GET", users, published.load("clockify", "users.json"))
    replay_server.record("GET", users, published.load("clockify", "error_401.json"), status=401)
    client = clockify_client(replay_server.url)

    [user] = client.users()
    assert (user.id, user.name, user.email, user.status) == (
        "5a0ab5acb07987125438b60f",
        "Ann Example",
        "ann@example.com",
        "ACTIVE",
    )
    with pytest.raises(clockify.ClockifyAuthError, match=r"Full authentication .* \(code 1000\)"):
        client.users()


def test_clockify_fake_serves_the_published_report_shape(clockify_server):  # noqa: F811
    fake = clockify_server
    fake.add_user(clockify_user := "5a0ab5acb07987125438b60f", "Ann", "ann@example.com")
    fake.add_project("5b641568b07987035750505e", "Website", "Acme")
    fake.add_entry(
        user_id=clockify_user,
        project_id="5b641568b07987035750505e",
        start=dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC),
        seconds=3600,
    )
    body = requests.post(
        f"{fake.reports_url}/workspaces/{fake.workspace_id}/reports/detailed",
        json={
            "dateRangeStart": "2026-01-01T00:00:00.000Z",
            "dateRangeEnd": "2026-01-31T23:59:59.999Z",
            "detailedFilter": {"page": 1, "pageSize": 50},
        },
        headers={"X-Api-Key": fake.api_key},
        timeout=5,
    ).json()
    example = published.load("clockify", "detailed_report.json")
    assert set(example["timeentries"][0]) <= set(body["timeentries"][0])
    me = requests.get(f"{fake.core_url}/user", headers={"X-Api-Key": fake.api_key}, timeout=5)
    assert set(me.json()) == set(published.load("clockify", "user.json"))
    users = requests.get(
        f"{fake.core_url}/workspaces/{fake.workspace_id}/users",
        headers={"X-Api-Key": fake.api_key},
        timeout=5,
    ).json()
    assert set(published.load("clockify", "users.json")[0]) <= set(users[0])
    assert set(example["timeentries"][0]["timeInterval"]) == set(
        body["timeentries"][0]["timeInterval"]
    )


# --- Toggl Track -----------------------------------------------------------------------------


def toggl_client(url: str) -> toggl.TogglClient:
    return toggl.TogglClient(api_token="tok", base_url=url, reports_url=url, **NO_WAIT)


def test_toggl_report_rows_carry_ids_and_names_come_from_projects_and_clients(
    replay_server,  # noqa: F811
):
    example = published.load("toggl", "reports_search_time_entries.json")
    search = "/workspace/777/search/time_entries"
    replay_server.record("POST", search, example["body"], headers=example["headers"])
    replay_server.record("POST", search, [])
    replay_server.record(
        "GET", "/workspaces/777/projects", published.load("toggl", "projects.json")
    )
    replay_server.record("GET", "/workspaces/777/clients", published.load("toggl", "clients.json"))
    client = toggl_client(replay_server.url)

    pages = list(
        client.report_pages("777", start_date=dt.date(2025, 1, 1), end_date=dt.date(2025, 1, 31))
    )

    [entry] = pages[0]
    assert pages[1] == []
    assert (entry.id, entry.user_id, entry.project_id, entry.duration_seconds) == (
        436694100,
        42,
        193791,
        5400,
    )
    assert (entry.hourly_rate, entry.currency) == (D("105"), "USD")
    # The row has no names, and none is invented.
    assert (entry.project_name, entry.client_name) == ("", "")
    first_request, second_request = replay_server.requests
    assert first_request.body["page_size"] == toggl.MAX_REPORT_PAGE_SIZE
    assert (second_request.body["first_id"], second_request.body["first_row_number"]) == (
        436694101,
        2,
    )
    assert client.project_names("777") == {193791: ("Website", "Acme")}


def test_toggl_v9_time_entries_example(replay_server):  # noqa: F811
    replay_server.record("GET", "/me/time_entries", published.load("toggl", "me_time_entries.json"))

    done, running = toggl_client(replay_server.url).my_time_entries(
        since=dt.datetime(2025, 1, 30, tzinfo=dt.UTC)
    )

    assert (done.id, done.workspace_id, done.project_id, done.duration_seconds) == (
        436694100,
        777,
        193791,
        5400,
    )
    assert (done.tags, done.is_running, done.deleted_at) == (("dev",), False, None)
    assert done.updated_at == dt.datetime(2025, 1, 30, 10, 31, 2, tzinfo=dt.UTC)
    assert (running.is_running, running.stop, running.project_id) == (True, None, None)
    assert replay_server.requests[0].query == {"meta": "true", "since": "1738195200"}


# The keys of each /me/time_entries item in a recorded answer published by a third-party
# client (garyhtou/toggl-track, README: the output of its `timeEntry.list()`); its values are
# not copied here (the stored sources may not be), only which fields a real answer carries.
PUBLISHED_V9_ENTRY_KEYS = {
    "id", "workspace_id", "project_id", "task_id", "billable", "start", "stop", "duration",
    "description", "tags", "tag_ids", "duronly", "at", "server_deleted_at", "user_id", "uid",
    "wid", "pid",
}  # fmt: skip


def test_toggl_v9_fixture_has_the_keys_of_a_recorded_answer(replay_server):  # noqa: F811
    example = published.load("toggl", "me_time_entries.json")
    assert all(PUBLISHED_V9_ENTRY_KEYS <= set(entry) for entry in example)

    # That answer has `tags` and `tag_ids` null (not []), `start` with +00:00 and `stop` with Z:
    # the adapter reads them so.
    entry = {
        **example[0],
        "tags": None,
        "tag_ids": None,
        "start": "2025-01-30T09:00:00+00:00",
        "stop": "2025-01-30T10:30:00Z",
    }
    replay_server.record("GET", "/me/time_entries", [entry])
    [read] = toggl_client(replay_server.url).my_time_entries()
    assert (read.tags, read.duration_seconds, read.is_running) == ((), 5400, False)
    assert read.stop == dt.datetime(2025, 1, 30, 10, 30, tzinfo=dt.UTC)


def test_toggl_me_and_error_examples(replay_server):  # noqa: F811
    replay_server.record("GET", "/me", published.load("toggl", "me.json"))
    me = toggl_client(replay_server.url).me()
    assert (me.id, me.name, me.email) == (42, "Ann", "ann@example.com")

    replay_server.record(
        "GET", "/me/time_entries", published.text("toggl", "error_402.txt"), status=402
    )
    with pytest.raises(toggl.TogglQuotaExceeded) as raised:
        toggl_client(replay_server.url).my_time_entries()
    assert raised.value.retry_after == 3600  # no hint: the sliding hour

    replay_server.record(
        "GET", "/workspaces/777/users", published.text("toggl", "error_403.txt"), status=403
    )
    with pytest.raises(toggl.TogglAuthError, match="Incorrect username"):
        toggl_client(replay_server.url).workspace_users("777")


def test_toggl_fake_rows_have_the_published_keys_and_no_names(toggl_server):  # noqa: F811
    fake = toggl_server
    fake.add_user(42, "Ann", "ann@example.com")
    fake.add_project(193791, "Website", "Acme")
    fake.add_entry(
        user_id=42, project_id=193791, start=dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC), seconds=60
    )
    auth = (fake.token, "api_token")
    search = f"{fake.reports_url}/workspace/{fake.workspace_id}/search/time_entries"
    rows = requests.post(
        search,
        json={"start_date": "2026-01-01", "end_date": "2026-01-31", "enrich_response": True},
        auth=auth,
        timeout=5,
    ).json()
    example = published.load("toggl", "reports_search_time_entries.json")["body"][0]
    assert set(rows[0]) == set(example)
    assert "project_name" not in rows[0] and "client_name" not in rows[0]
    projects = requests.get(
        f"{fake.api_url}/workspaces/{fake.workspace_id}/projects", auth=auth, timeout=5
    ).json()
    assert set(projects[0]) == set(published.load("toggl", "projects.json")[0])
    assert projects[0]["client_id"] is not None
    # The documented requirements: both dates, and a bounded page size.
    no_dates = requests.post(search, json={"page_size": 50}, auth=auth, timeout=5)
    assert no_dates.status_code == 400
    too_big = requests.post(
        search,
        json={"start_date": "2026-01-01", "end_date": "2026-01-31", "page_size": 5000},
        auth=auth,
        timeout=5,
    )
    assert too_big.status_code == 400


# --- QuickBooks Online -----------------------------------------------------------------------

REALM = "9130"
INVOICE = qbo.InvoiceInput(
    customer_id="58",
    doc_number="INV-1",
    txn_date=dt.date(2025, 1, 31),
    due_date=dt.date(2025, 2, 28),
    currency="USD",
    lines=(
        qbo.InvoiceLineInput(
            item_id="1",
            description="Dev work (1.5h)",
            quantity=D("1.5"),
            unit_price=D("100"),
            amount=D("150.00"),
            service_date=dt.date(2025, 1, 2),
        ),
    ),
    private_note="draft 12",
)


@pytest.fixture
def qbo_api(replay_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to the replay fake
    return qbo.QuickBooksApi(
        qbo.ApiConfig(
            base_url=f"{replay_server.url}/v3",
            realm_id=REALM,
            access_token="access",
            request_interval_seconds=0,
        )
    )


def test_quickbooks_invoice_create_example(replay_server, qbo_api):  # noqa: F811
    replay_server.record(
        "POST",
        f"/v3/company/{REALM}/invoice",
        published.load("quickbooks", "invoice_create_response.json"),
    )

    created = qbo_api.create_invoice(INVOICE, request_id="inv-12-v1")

    assert created == qbo.RemoteInvoice(
        id="130",
        sync_token="0",
        doc_number="INV-1",
        total_amount=D("150.0"),
        balance=D("150.0"),
        email_status="NotSet",
        private_note="",
        total_tax=D("0"),  # the example's TxnTaxDetail.TotalTax, read since the tax work
    )
    [request] = replay_server.requests
    assert request.query == {"minorversion": "75", "requestid": "inv-12-v1"}
    assert request.body["CustomerRef"] == {"value": "58"}


def test_quickbooks_query_examples(replay_server, qbo_api):  # noqa: F811
    query = f"/v3/company/{REALM}/query"
    replay_server.record(
        "POST", query, published.load("quickbooks", "query_customer_response.json")
    )
    assert qbo_api.list_customers() == [qbo.RemoteCustomer(id="58", display_name="Acme")]
    replay_server.record("POST", query, published.load("quickbooks", "query_empty_response.json"))
    assert qbo_api.find_invoices_by_number("INV-404") == []


@pytest.mark.parametrize(
    ("fixture", "status", "error", "code"),
    [
        ("fault_validation_6240.json", 400, qbo.QuickBooksValidationError, "6240"),
        ("fault_401.json", 401, qbo.QuickBooksAuthExpired, "3200"),
        ("throttle_429.xml", 429, qbo.QuickBooksThrottled, "3001"),
    ],
)
def test_quickbooks_fault_examples(replay_server, qbo_api, fixture, status, error, code):  # noqa: F811
    replay_server.record(
        "POST", f"/v3/company/{REALM}/invoice", published.text("quickbooks", fixture), status=status
    )
    with pytest.raises(error) as raised:
        qbo_api.create_invoice(INVOICE, request_id="inv-12-v1")
    assert (raised.value.code, raised.value.status) == (code, status)


def test_quickbooks_fake_invoice_has_the_published_keys(quickbooks_fake, monkeypatch):  # noqa: F811
    fake = quickbooks_fake
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    access, _ = fake.issue_tokens()
    customer = fake.add_customer("Acme")
    item = fake.add_item("Services")
    body = qbo.invoice_body(
        qbo.InvoiceInput(
            **{
                **INVOICE.__dict__,
                "customer_id": customer,
                "lines": (qbo.InvoiceLineInput(**{**INVOICE.lines[0].__dict__, "item_id": item}),),
            }
        )
    )
    answer = requests.post(
        f"{fake.base_url}/v3/company/{fake.realm_id}/invoice",
        params={"minorversion": "75", "requestid": "contract-1"},
        data=qbo.dumps_exact(body),
        headers={
            "Authorization": f"Bearer {access}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        timeout=5,
    ).json()
    example = published.load("quickbooks", "invoice_create_response.json")
    assert set(example) <= set(answer)
    missing = set(example["Invoice"]) - set(answer["Invoice"])
    assert missing == set(), f"the fake's invoice lacks published keys {sorted(missing)}"


def test_quickbooks_companyinfo_example(replay_server, qbo_api):  # noqa: F811
    replay_server.record(
        "GET",
        f"/v3/company/{REALM}/companyinfo/{REALM}",
        published.load("quickbooks", "companyinfo_response.json"),
    )
    assert qbo_api.company_name() == "Sandbox Company_US_1"
    assert replay_server.requests[0].query == {"minorversion": "75"}
