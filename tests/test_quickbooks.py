"""QuickBooks Online: OAuth, mapping, exactly-once push, errors and status read-back.

Real HTTP to the local fake (tests/fakes/quickbooks_server.py) and the real PostgreSQL."""

import datetime as dt
import json
import threading
from decimal import Decimal as D
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_q.models import OrmQ, Schedule

from integrations import quickbooks as qbo
from integrations.encryption import decrypt, encrypt
from invoices import quickbooks as service
from invoices.approval import approve_invoice
from invoices.drafting import Period, draft_invoices
from invoices.models import (
    Cap,
    CustomerMapping,
    Firm,
    Flag,
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    InvoicePush,
    InvoiceStatus,
    ItemMapping,
    QuickBooksConnection,
)
from invoices.quickbooks import pushing, queueing
from invoices.tasks_quickbooks import push_invoice_task
from tests import billing_fixtures as make
from tests.fakes.quickbooks_server import FakeQuickBooks, quickbooks_fake  # noqa: F401

OCTOBER = Period.month("2026-10")
CALLBACK = "http://testserver/admin/invoices/quickbooksconnection/callback/"


# --- Fixtures -----------------------------------------------------------------------------


@pytest.fixture
def fake(quickbooks_fake, settings, monkeypatch):  # noqa: F811
    """The fake, and settings pointing both libraries at it."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to the fake
    settings.BILLABLES_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.QBO_CLIENT_ID = quickbooks_fake.client_id
    settings.QBO_CLIENT_SECRET = quickbooks_fake.client_secret
    settings.QBO_ENVIRONMENT = f"{quickbooks_fake.base_url}/.well-known/openid_configuration"
    settings.QBO_API_BASE_URL = f"{quickbooks_fake.base_url}/v3"
    settings.QBO_REDIRECT_URI = CALLBACK
    settings.QBO_TIMEOUT_SECONDS = (2, 5)
    settings.QBO_REQUESTS_PER_MINUTE = 600_000
    settings.QBO_RETRY_BASE_SECONDS = 0.01
    settings.QBO_RETRY_MAX_SECONDS = 0.05
    settings.QBO_THROTTLE_WAIT_SECONDS = 0.01
    return quickbooks_fake


def connect(fake: FakeQuickBooks, *, expires_in=dt.timedelta(hours=1)) -> QuickBooksConnection:
    access, refresh = fake.issue_tokens()
    return QuickBooksConnection.objects.create(
        pk=1,
        environment="custom",
        realm_id=fake.realm_id,
        status=QuickBooksConnection.Status.CONNECTED,
        access_token_encrypted=encrypt(access),
        refresh_token_encrypted=encrypt(refresh),
        access_token_expires_at=timezone.now() + expires_in,
        connected_at=timezone.now(),
    )


def user_with(username, *codenames, superuser=False):
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", "pw")
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)


PUSHER = (
    "approve_invoice",
    "void_invoice",
    "view_invoice",
    "change_invoice",
    "add_invoicepush",
    "view_invoicepush",
)


@pytest.fixture
def pusher(db):
    return user_with("pusher", *PUSHER)


@pytest.fixture
def month(db):
    """Acme, October 2026: two time lines (300.00 + 100.00), a not-to-exceed cap of 350.00
    (-50.00) and a 10% discount (-35.00): total 315.00."""
    make.firm()
    dev = make.category("development", code="L250")
    research = make.category("research", code="L310")
    acme = make.client("Acme", discount_percent=D("10"))
    project = make.project(acme, "ACME")
    Cap.objects.create(client=acme, project=project, amount=D("350.00"))
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    make.rule(research, task="Research")
    make.entry(project, ana, minutes=90, notes="Drafted the motion", day=dt.date(2026, 10, 5))
    make.entry(
        project, ana, minutes=30, notes="Case law", task="Research", day=dt.date(2026, 10, 7)
    )
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    return {"invoice": invoice, "client": acme, "dev": dev, "research": research}


@pytest.fixture
def mapped(fake, month):
    """Connected, with Acme, both categories and a default item mapped in the fake."""
    connect(fake)
    customer = fake.add_customer("Acme")
    dev_item = fake.add_item("Development")
    research_item = fake.add_item("Research")
    adjust_item = fake.add_item("Adjustments")
    CustomerMapping.objects.create(
        client=month["client"], qbo_customer_id=customer, qbo_display_name="Acme"
    )
    ItemMapping.objects.create(
        category=month["dev"], qbo_item_id=dev_item, qbo_item_name="Development"
    )
    ItemMapping.objects.create(
        category=month["research"], qbo_item_id=research_item, qbo_item_name="Research"
    )
    service.set_default_item(item_id=adjust_item, item_name="Adjustments")
    return {
        **month,
        "customer": customer,
        "dev_item": dev_item,
        "research_item": research_item,
        "adjust_item": adjust_item,
    }


@pytest.fixture
def approved(mapped, pusher):
    approve_invoice(invoice=mapped["invoice"], user=pusher)
    mapped["invoice"].refresh_from_db()
    return mapped


def queue(invoice, user) -> InvoicePush:
    """request_push without running the task (its on-commit enqueue is not executed)."""
    return service.request_push(invoice=invoice, user=user)


def push_now(push_row: InvoicePush) -> InvoicePush:
    service.push(push_id=push_row.pk)
    push_row.refresh_from_db()
    return push_row


# --- Adapter: fault bodies and exact JSON (no database) --------------------------------------

THROTTLE_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse time="x" '
    'xmlns="http://schema.intuit.com/finance/v3"><Fault type="SERVICE"><Error code="3001">'
    "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
    "<Detail>The request limit was reached.  Try again later</Detail></Error></Fault>"
    "</IntuitResponse>"
)
EXPIRED = (
    '{"warnings":null,"fault":{"error":[{"message":"message=AuthenticationFailed; '
    'errorCode=003200; statusCode=401","detail":"Token expired: AB11","code":"3200",'
    '"element":null}],"type":"AUTHENTICATION"},"time":1533811101733}'
)
DUPLICATE = (
    '{"Fault":{"Error":[{"Message":"Duplicate Name Exists Error","Detail":"The name '
    'supplied already exists. : x","code":"6240","element":""}],"type":'
    '"ValidationFault"},"time":"2025-01-31T10:00:00.123-08:00"}'
)
INACTIVE = (
    '{"Fault":{"Error":[{"Message":"Object Not Found","Detail":"Something you\'re '
    'trying to use has been made inactive.","code":"610","element":"CustomerRef"}],'
    '"type":"ValidationFault"}}'
)


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "message"),
    [
        (
            429,
            {"Retry-After": "7"},
            THROTTLE_XML,
            qbo.QuickBooksThrottled,
            "QuickBooks asked us to slow down (too many requests for this company); it asked "
            "to wait 7 s",
        ),
        (
            400,
            {},
            DUPLICATE.replace('"6240"', '"3001"').replace(
                "Duplicate Name Exists Error", "ThrottleExceeded"
            ),
            qbo.QuickBooksThrottled,
            "QuickBooks asked us to slow down (too many requests for this company)",
        ),
        (
            401,
            {},
            EXPIRED,
            qbo.QuickBooksAuthExpired,
            "QuickBooks did not accept the access token (expired or revoked)",
        ),
        (
            400,
            {},
            DUPLICATE,
            qbo.QuickBooksValidationError,
            "that name is already used in QuickBooks by another customer, vendor or employee: The "
            "name supplied already exists. : x [QuickBooks error 6240]",
        ),
        (
            200,
            {},
            INACTIVE,
            qbo.QuickBooksValidationError,
            "QuickBooks cannot find something this refers to: it was deleted or made inactive in "
            "QuickBooks (a customer or an item); map it again and retry (field CustomerRef): "
            "Something you're trying to use has been made inactive. [QuickBooks error 610]",
        ),
        (
            503,
            {},
            "<html>Service Unavailable</html>",
            qbo.QuickBooksTransientError,
            "QuickBooks had a problem on its side (HTTP 503); it is retried",
        ),
    ],
)
def test_faults_become_named_errors_in_plain_words(status, headers, body, kind, message):
    error = qbo.error_from_response(status, headers, body)
    assert type(error) is kind
    assert error.message == message


def test_success_is_not_an_error_and_xml_fault_fields_are_read():
    assert qbo.error_from_response(200, {}, '{"QueryResponse": {}}') is None
    fault = qbo.parse_fault(THROTTLE_XML)
    assert (fault.type, fault.errors[0].code) == ("SERVICE", "3001")
    assert fault.errors[0].detail == "The request limit was reached.  Try again later"


def test_amounts_are_sent_as_exact_json_numbers_never_floats():
    assert qbo.dumps_exact({"Amount": D("300.10"), "Qty": D("1.5000"), "x": [D("-35.00")]}) == (
        '{"Amount":300.10,"Qty":1.5000,"x":[-35.00]}'
    )
    with pytest.raises(TypeError):
        qbo.dumps_exact({"Amount": 0.1})


# --- OAuth ------------------------------------------------------------------------------------


def test_connect_stores_realm_and_encrypted_tokens(fake, db):
    url = service.start_connect(redirect_uri=CALLBACK)
    query = parse_qs(urlsplit(url).query)
    state = QuickBooksConnection.objects.get().oauth_state
    assert url.startswith(f"{fake.base_url}/oauth2/authorize?")
    assert query["state"] == [state] and query["redirect_uri"] == [CALLBACK]
    assert query["scope"] == ["com.intuit.quickbooks.accounting"]
    # Intuit's consent page redirects back with a code and the company id.
    back = parse_qs(
        urlsplit(requests.get(url, allow_redirects=False, timeout=5).headers["Location"]).query
    )
    conn = service.complete_connect(
        state=back["state"][0],
        code=back["code"][0],
        realm_id=back["realmId"][0],
        redirect_uri=CALLBACK,
    )
    conn.refresh_from_db()
    assert (conn.status, conn.realm_id, conn.oauth_state) == ("connected", fake.realm_id, "")
    assert fake.refresh_token not in conn.refresh_token_encrypted  # encrypted at rest
    assert decrypt(conn.refresh_token_encrypted) == fake.refresh_token
    assert fake.check_token("Bearer " + decrypt(conn.access_token_encrypted))


def test_callback_with_a_bad_state_is_refused_and_the_state_is_spent(fake, db):
    service.start_connect(redirect_uri=CALLBACK)
    real_state = QuickBooksConnection.objects.get().oauth_state
    code = fake.issue_code()
    with pytest.raises(service.ConnectRefused, match="the state does not match"):
        service.complete_connect(
            state="forged", code=code, realm_id=fake.realm_id, redirect_uri=CALLBACK
        )
    conn = QuickBooksConnection.objects.get()
    assert (conn.status, conn.realm_id, conn.refresh_token_encrypted) == ("disconnected", "", "")
    assert not [r for r in fake.requests if r.path == "/oauth2/v1/tokens/bearer"]
    with pytest.raises(service.ConnectRefused):  # single use: the real state is gone too
        service.complete_connect(
            state=real_state, code=code, realm_id=fake.realm_id, redirect_uri=CALLBACK
        )


def test_admin_connect_and_callback(fake, client, db):
    client.force_login(user_with("root", superuser=True))
    page = client.get(reverse("admin:invoices_quickbooksconnection_changelist"))
    assert "Connect to QuickBooks" in page.content.decode()
    start = client.post(reverse("admin:invoices_quickbooksconnection_connect"))
    assert start.status_code == 302 and start["Location"].startswith(fake.base_url)
    back = requests.get(start["Location"], allow_redirects=False, timeout=5).headers["Location"]
    assert back.startswith(CALLBACK)
    done = client.get(back.removeprefix("http://testserver"), follow=True)
    assert f"Connected to QuickBooks company {fake.realm_id}." in done.content.decode()
    assert QuickBooksConnection.objects.get().status == "connected"
    forged = client.get(
        reverse("admin:invoices_quickbooksconnection_callback"),
        {"state": "x", "code": "y", "realmId": "1"},
        follow=True,
    )
    assert "Not connected: QuickBooks&#x27; answer does not belong" in forged.content.decode()


def test_refresh_before_expiry_rotates_and_persists_the_refresh_token(fake, db):
    conn = connect(fake, expires_in=dt.timedelta(minutes=2))  # within the 5-minute margin
    old_refresh = decrypt(conn.refresh_token_encrypted)
    realm, token = service.access_token()
    conn.refresh_from_db()
    assert fake.refresh_count == 1
    assert decrypt(conn.refresh_token_encrypted) == fake.refresh_token != old_refresh
    assert decrypt(conn.access_token_encrypted) == token and realm == fake.realm_id
    assert conn.access_token_expires_at > timezone.now() + dt.timedelta(minutes=55)
    assert service.access_token() == (realm, token)  # fresh now: no second refresh
    assert fake.refresh_count == 1


def test_a_401_refreshes_once_and_the_call_succeeds(fake, db):
    connect(fake)
    fake.add_customer("Acme")
    fake.expire_access_tokens()  # our stored expiry still says valid
    assert [c.display_name for c in service.fetch_customers()] == ["Acme"]
    assert fake.refresh_count == 1
    assert [r.status for r in fake.api_requests()] == [401, 200]


def test_invalid_grant_needs_reconnect_and_is_not_retried(fake, db, client):
    connect(fake, expires_in=dt.timedelta(seconds=-1))
    fake.revoke_refresh_token()
    with pytest.raises(qbo.QuickBooksReconnectRequired, match="invalid_grant"):
        service.access_token()
    conn = QuickBooksConnection.objects.get()
    assert conn.status == "needs_reconnect"
    assert "Incorrect or invalid refresh token" in conn.last_error
    with pytest.raises(qbo.QuickBooksReconnectRequired):
        service.access_token()
    assert len([r for r in fake.requests if r.path == "/oauth2/v1/tokens/bearer"]) == 1
    client.force_login(user_with("root", superuser=True))
    html = client.get(reverse("admin:invoices_invoice_changelist")).content.decode()
    assert "QuickBooks needs reconnecting: QuickBooks no longer accepts this connection" in html


# --- Mapping -------------------------------------------------------------------------------------


def test_mapping_fetch_match_by_name_and_create(fake, month):
    connect(fake)
    fake.add_customer("ACME ")
    fake.add_customer("Globex")
    fake.add_customer("Old client", active=False)
    initech = make.client("Initech")
    assert [c.display_name for c in service.fetch_customers()] == ["ACME ", "Globex"]

    summary = service.match_clients(clients=[month["client"], initech])
    assert (summary.matched, summary.unmatched) == (["Acme"], ["Initech"])
    assert CustomerMapping.objects.get(client=month["client"]).qbo_display_name == "ACME "

    summary = service.create_customers(clients=[month["client"], initech])
    assert (summary.matched, summary.created) == ([], ["Initech"])  # Acme is mapped already
    created = CustomerMapping.objects.get(client=initech)
    assert fake.customers[created.qbo_customer_id]["DisplayName"] == "Initech"
    assert len(fake.customers) == 4

    summary = service.create_items(categories=[month["dev"], month["research"]])
    assert summary.created == ["Development", "Research"]
    item = fake.items[ItemMapping.objects.get(category=month["dev"]).qbo_item_id]
    assert (item["Name"], item["Type"]) == ("Development", "Service")
    assert [i.name for i in service.fetch_items()] == ["Development", "Research", "Services"]
    assert service.match_categories(categories=[month["dev"]]).matched == ["Development"]


def test_unmapped_client_and_categories_refuse_the_push_with_exact_message(fake, month, pusher):
    connect(fake)
    invoice = approve_invoice(invoice=month["invoice"], user=pusher)
    with pytest.raises(service.PushRefused) as refused:
        queue(invoice, pusher)
    number = invoice.number
    assert str(refused.value) == (
        f'{number} cannot go to QuickBooks until these are mapped: client "Acme" to a QuickBooks '
        'customer; categories "Development", "Research" to QuickBooks items; a default item '
        "(for lines without a category: discounts and adjustments)."
    )
    assert InvoicePush.objects.count() == 0 and fake.api_requests() == []


def test_admin_mapping_page_saves_a_choice_from_the_fetched_list(fake, month, client):
    connect(fake)
    cid = fake.add_customer("Acme Holdings")
    client.force_login(user_with("root", superuser=True))
    url = reverse("admin:invoices_quickbooksconnection_customers")
    assert "Acme Holdings" in client.get(url).content.decode()
    client.post(url, {"action": "Save", f"map-{month['client'].pk}": cid})
    mapping = CustomerMapping.objects.get(client=month["client"])
    assert (mapping.qbo_customer_id, mapping.qbo_display_name) == (cid, "Acme Holdings")


def test_admin_items_page_creates_missing_items_and_sets_the_default_item(fake, month, client):
    connect(fake)
    fake.add_item("research")  # matched by name, case ignored
    client.force_login(user_with("root", superuser=True))
    url = reverse("admin:invoices_quickbooksconnection_items")
    done = client.post(url, {"action": "Create missing in QuickBooks"}, follow=True)
    assert "1 matched by name; 1 created" in done.content.decode()
    dev = ItemMapping.objects.get(category=month["dev"])
    assert fake.items[dev.qbo_item_id]["Name"] == "Development"
    services = next(i for i, row in fake.items.items() if row["Name"] == "Services")
    client.post(
        url,
        {
            "action": "Save",
            "default-item": services,
            f"map-{month['dev'].pk}": dev.qbo_item_id,
            f"map-{month['research'].pk}": "",
        },
    )
    conn = QuickBooksConnection.objects.get()
    assert (conn.default_item_id, conn.default_item_name) == (services, "Services")
    assert not ItemMapping.objects.filter(category=month["research"]).exists()  # unmapped


# --- Pushing --------------------------------------------------------------------------------------


def test_push_creates_exactly_one_quickbooks_invoice_with_our_lines(
    approved, fake, pusher, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)  # the task runs in-process
    invoice = approved["invoice"]
    with django_capture_on_commit_callbacks(execute=True):
        row = service.request_push(invoice=invoice, user=pusher)
    row.refresh_from_db()
    [qbo_invoice] = fake.invoices.values()
    [create] = fake.invoice_creates()
    assert create.query["requestid"] == [f"billables-{invoice.pk}-g1"] == [row.request_id]
    body = json.loads(create.body, parse_float=D)
    link = f"/admin/invoices/invoice/{invoice.pk}/change/"
    assert {
        k: body[k]
        for k in (
            "CustomerRef",
            "DocNumber",
            "TxnDate",
            "DueDate",
            "CurrencyRef",
            "EmailStatus",
            "PrivateNote",
        )
    } == {
        "CustomerRef": {"value": approved["customer"]},
        "DocNumber": invoice.number,
        "TxnDate": "2026-10-31",
        "DueDate": "2026-11-30",
        "CurrencyRef": {"value": "USD"},
        "EmailStatus": "NotSet",
        "PrivateNote": f"billables {invoice.number} (request {row.request_id}): {link}",
    }
    assert "BillEmail" not in body  # a draft for sending: QuickBooks does not email it
    lines = [
        (
            ln["Description"],
            ln["SalesItemLineDetail"]["ItemRef"]["value"],
            ln["SalesItemLineDetail"]["Qty"],
            ln["SalesItemLineDetail"]["UnitPrice"],
            ln["Amount"],
            ln["SalesItemLineDetail"].get("ServiceDate"),
        )
        for ln in body["Line"]
    ]
    assert lines == [
        (
            "[L250] Development: Drafted the motion",
            approved["dev_item"],
            D("1.5000"),
            D("200.00"),
            D("300.00"),
            "2026-10-05",
        ),
        (
            "[L310] Research: Case law",
            approved["research_item"],
            D("0.5000"),
            D("200.00"),
            D("100.00"),
            "2026-10-07",
        ),
        (
            "Not-to-exceed adjustment (ACME)",
            approved["adjust_item"],
            D("1"),
            D("-50.00"),
            D("-50.00"),
            None,
        ),
        ("Discount (10%)", approved["adjust_item"], D("1"), D("-35.00"), D("-35.00"), None),
    ]
    assert '"Amount":300.00' in create.body  # an exact JSON number, not "300.00"
    assert (row.status, row.qbo_invoice_id, row.sync_token, row.doc_number, row.qbo_total) == (
        "pushed",
        qbo_invoice["Id"],
        "0",
        invoice.number,
        D("315.00"),
    )
    assert row.pushed_at is not None and row.qbo_status == "draft" and row.attempts == 1
    assert invoice.total == D("315.00")
    assert InvoiceEvent.objects.filter(invoice=invoice, action="qbo_pushed").count() == 1


def test_manual_lines_go_to_quickbooks_like_time_lines(mapped, fake, pusher):
    """Billing semantics 10.4: a fixed fee, an expense and a credit are lines of the QuickBooks
    invoice, on their category's item or the default item, before the cap and discount."""
    from invoices.adjustments import add_manual_line

    period = Period(mapped["invoice"].period_start, mapped["invoice"].period_end)
    common = {"client": mapped["client"], "period": period, "user": pusher}
    add_manual_line(
        **common,
        kind="fixed_fee",
        description="Setup fee",
        quantity=D("1"),
        unit_price=D("250.00"),
        reason="engagement letter",
    )
    add_manual_line(
        **common,
        kind="expense",
        description="Copies",
        quantity=D("2"),
        unit_price=D("30.00"),
        category=mapped["research"],
        reason="certified copies",
    )
    draft = add_manual_line(
        **common,
        kind="credit",
        description="Goodwill credit",
        quantity=D("1"),
        unit_price=D("-20.00"),
        reason="late delivery",
    )
    # 400 + 250 + 60 - 20 = 690; the cap takes 50 off ACME's time; 10% of 640 = 64
    assert (draft.subtotal, draft.adjustments, draft.discount, draft.total) == (
        D("690.00"),
        D("-50.00"),
        D("-64.00"),
        D("576.00"),
    )
    invoice = approve_invoice(invoice=draft, user=pusher)
    row = push_now(queue(invoice, pusher))
    body = json.loads(fake.invoice_creates()[-1].body, parse_float=D)
    lines = [
        (
            ln["Description"],
            ln["SalesItemLineDetail"]["ItemRef"]["value"],
            ln["SalesItemLineDetail"]["Qty"],
            ln["SalesItemLineDetail"]["UnitPrice"],
            ln["Amount"],
        )
        for ln in body["Line"]
    ][2:]
    assert lines == [
        ("Setup fee", mapped["adjust_item"], D("1.0000"), D("250.00"), D("250.00")),
        ("[L310] Copies", mapped["research_item"], D("2.0000"), D("30.00"), D("60.00")),
        ("Goodwill credit", mapped["adjust_item"], D("1.0000"), D("-20.00"), D("-20.00")),
        (
            "Not-to-exceed adjustment (ACME)",
            mapped["adjust_item"],
            D("1"),
            D("-50.00"),
            D("-50.00"),
        ),
        ("Discount (10%)", mapped["adjust_item"], D("1"), D("-64.00"), D("-64.00")),
    ]
    assert (row.status, row.qbo_total) == ("pushed", D("576.00"))


def test_lost_response_is_looked_up_by_number_and_one_invoice_exists(approved, fake, pusher):
    fake.switches.drop_invoice_responses = 1  # committed, then the connection is closed
    row = push_now(queue(approved["invoice"], pusher))
    creates = fake.invoice_creates()
    # The retry asks QuickBooks by number before creating again, and finds it.
    assert [c.status for c in creates] == [-1]
    assert {c.query["requestid"][0] for c in creates} == {row.request_id}
    assert len(fake.invoices) == 1
    assert (row.status, row.qbo_invoice_id, row.attempts) == (
        "pushed",
        next(iter(fake.invoices)),
        2,
    )


def test_worker_killed_after_quickbooks_created_the_invoice(approved, fake, pusher):
    row = queue(approved["invoice"], pusher)
    # The first run sent the create and died before storing the answer.
    payload = service.invoice_input(invoice=approved["invoice"], push=row)
    service.with_api(lambda api: api.create_invoice(payload, request_id=row.request_id))
    InvoicePush.objects.filter(pk=row.pk).update(status="pushing", attempts=1)
    row = push_now(row)  # django-q2 delivers the task again
    assert len(fake.invoices) == 1
    assert (row.status, row.qbo_invoice_id, row.attempts) == (
        "pushed",
        next(iter(fake.invoices)),
        2,
    )


def test_worker_killed_before_the_request_went_out(approved, fake, pusher):
    row = queue(approved["invoice"], pusher)
    InvoicePush.objects.filter(pk=row.pk).update(status="pushing")
    row = push_now(row)
    assert row.status == "pushed" and len(fake.invoices) == 1


def test_requestid_replay_answers_a_repeated_create_with_the_original(approved, fake, pusher):
    """The second guard, under the lookup by number: QuickBooks answers a requestid it has seen
    with the invoice it created."""
    row = queue(approved["invoice"], pusher)
    payload = service.invoice_input(invoice=approved["invoice"], push=row)
    first = service.with_api(lambda api: api.create_invoice(payload, request_id=row.request_id))
    again = service.with_api(lambda api: api.create_invoice(payload, request_id=row.request_id))
    assert first == again and len(fake.invoices) == 1


def test_interrupted_push_older_than_the_requestid_memory_is_reconciled_by_number(
    approved, fake, pusher
):
    row = queue(approved["invoice"], pusher)
    payload = service.invoice_input(invoice=approved["invoice"], push=row)
    service.with_api(lambda api: api.create_invoice(payload, request_id=row.request_id))
    fake.forget_request_ids()
    InvoicePush.objects.filter(pk=row.pk).update(
        status="pushing", attempts=1, created_at=timezone.now() - dt.timedelta(days=2)
    )
    creates_before = len(fake.invoice_creates())
    row = push_now(row)
    assert len(fake.invoices) == 1 and len(fake.invoice_creates()) == creates_before
    assert row.status == "pushed" and row.qbo_invoice_id == next(iter(fake.invoices))
    assert InvoiceEvent.objects.get(action="qbo_pushed").detail["reconciled"] is True


def test_total_mismatch_flags_the_invoice(approved, fake, pusher):
    fake.switches.tax_percent = D("8")  # QuickBooks adds sales tax on its own
    row = push_now(queue(approved["invoice"], pusher))
    invoice = Invoice.objects.get(pk=approved["invoice"].pk)
    assert (row.status, row.qbo_total) == ("mismatch", D("340.20"))
    assert Flag.QBO_MISMATCH in invoice.flags
    assert row.last_error == (
        "QuickBooks' total is 340.20 USD, ours is 315.00 (+25.20 USD): check tax and line "
        f"settings of QuickBooks invoice {invoice.number} before sending it"
    )
    with pytest.raises(service.PushRefused, match="never sent twice"):
        queue(invoice, pusher)


@pytest.mark.parametrize("throttle_format", ["xml", "json"])
def test_throttling_is_retried_honouring_retry_after(
    approved, fake, pusher, throttle_format, monkeypatch
):
    waits = []
    monkeypatch.setattr(pushing, "_sleep", waits.append)
    fake.switches.throttle_next = 2
    fake.switches.throttle_format = throttle_format
    fake.switches.retry_after = "3"
    row = push_now(queue(approved["invoice"], pusher))
    assert row.status == "pushed" and len(fake.invoices) == 1
    assert [c.status for c in fake.invoice_creates()] == [429, 429, 200]
    assert [w >= 3 for w in waits] == [True, True]


def test_transient_failures_wait_for_the_sweep_with_the_same_request_id(
    approved, fake, pusher, settings, monkeypatch
):
    settings.QBO_PUSH_MAX_TRIES = 2
    fake.switches.fail_next = 2
    row = push_now(queue(approved["invoice"], pusher))
    assert (row.status, row.attempts) == ("queued", 2)
    assert row.last_error == (
        "QuickBooks had a problem on its side (HTTP 503, error 10000); it is retried. Will try "
        "again in a few minutes (after 2 tries so far)."
    )
    InvoicePush.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=20)
    )
    enqueued = []
    monkeypatch.setattr(queueing, "enqueue_push", lambda *, push_id: enqueued.append(push_id))
    assert service.resume_stalled_pushes() == 1 and enqueued == [row.pk]
    row = push_now(row)
    assert (row.status, row.attempts) == ("pushed", 3) and len(fake.invoices) == 1
    assert {c.query["requestid"][0] for c in fake.invoice_creates()} == {row.request_id}


def test_transient_failures_are_retried_then_give_up_with_a_retry_action(
    approved, fake, pusher, settings
):
    settings.QBO_PUSH_MAX_TRIES = settings.QBO_PUSH_MAX_ATTEMPTS = 3
    fake.switches.fail_next = 3
    row = push_now(queue(approved["invoice"], pusher))
    assert row.status == "failed" and row.attempts == 3 and fake.invoices == {}
    assert row.last_error.startswith("QuickBooks had a problem on its side (HTTP 503")
    retry = queue(approved["invoice"], pusher)  # the retry action: a new generation
    assert (retry.generation, retry.request_id) == (2, f"billables-{row.invoice_id}-g2")
    assert push_now(retry).status == "pushed" and len(fake.invoices) == 1


def test_validation_error_is_not_retried_and_is_shown_with_a_retry_action(
    approved, fake, pusher, client
):
    fake.delete_customer(approved["customer"])  # made inactive in QuickBooks
    row = push_now(queue(approved["invoice"], pusher))
    assert row.status == "failed" and len(fake.invoice_creates()) == 1 and row.attempts == 1
    assert row.last_error.startswith(
        "QuickBooks cannot find something this refers to: it was deleted or made inactive in "
        "QuickBooks (a customer or an item); map it again and retry (field CustomerRef)"
    )
    client.force_login(pusher)
    html = client.get(
        reverse("admin:invoices_invoice_change", args=[row.invoice_id])
    ).content.decode()
    assert "it was deleted or made inactive in QuickBooks" in html
    assert "Retry sending to QuickBooks" in html
    # Someone maps Acme to a live customer and presses Retry.
    CustomerMapping.objects.filter(client=approved["client"]).update(
        qbo_customer_id=fake.add_customer("Acme Ltd")
    )
    response = client.post(reverse("admin:invoices_invoice_qbo_send", args=[row.invoice_id]))
    assert response.status_code == 302
    retry = InvoicePush.objects.get(generation=2)
    assert push_now(retry).status == "pushed"
    assert len(fake.invoices) == 1
    # The retry asked QuickBooks for an earlier generation's invoice before creating.
    assert "DocNumber" in fake.api_requests("POST", "/query")[-1].body


def test_a_push_waits_for_another_push_to_the_same_company_then_gives_way(
    approved, fake, pusher, settings
):
    settings.QBO_PUSH_LOCK_WAIT_SECONDS = 0.2
    row = queue(approved["invoice"], pusher)
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:  # another worker pushing to this company
        other.execute(
            "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))",
            [service.LOCK_NAMESPACE, fake.realm_id],
        )
        assert push_invoice_task(row.pk) == "busy"
    row.refresh_from_db()
    assert row.status == "queued" and fake.api_requests() == []
    assert push_invoice_task(row.pk) == "pushed"  # the lock went with the other connection


def test_a_pushed_invoice_is_never_pushed_again(approved, fake, pusher):
    row = push_now(queue(approved["invoice"], pusher))
    requests_before = len(fake.api_requests())
    assert push_now(row).status == "pushed"  # the task delivered a second time
    assert len(fake.api_requests()) == requests_before
    with pytest.raises(service.PushRefused) as refused:
        queue(approved["invoice"], pusher)
    assert str(refused.value) == (
        f"{row.doc_number} is already in QuickBooks (invoice {row.doc_number}, id "
        f"{row.qbo_invoice_id}); it is never sent twice"
    )
    assert len(fake.invoices) == 1


def test_only_approved_invoices_are_pushed(mapped, fake, pusher):
    with pytest.raises(service.PushRefused, match="is draft; only approved invoices"):
        queue(mapped["invoice"], pusher)


def test_approve_and_send_is_all_or_nothing(mapped, fake, pusher, client):
    CustomerMapping.objects.all().delete()
    client.force_login(pusher)
    invoice = mapped["invoice"]
    client.post(reverse("admin:invoices_invoice_qbo_approve_send", args=[invoice.pk]))
    invoice.refresh_from_db()
    assert invoice.status == "draft" and InvoicePush.objects.count() == 0
    service.map_client(client=mapped["client"], customer_id=mapped["customer"], display_name="Acme")
    client.post(reverse("admin:invoices_invoice_qbo_approve_send", args=[invoice.pk]))
    invoice.refresh_from_db()
    assert invoice.status == "approved"
    row = InvoicePush.objects.get()
    assert row.status == "queued" and OrmQ.objects.count() == 0  # enqueued on commit only


def test_push_waits_while_quickbooks_needs_reconnecting_then_resumes(
    approved, fake, pusher, monkeypatch
):
    row = queue(approved["invoice"], pusher)
    QuickBooksConnection.objects.filter(pk=1).update(
        status="needs_reconnect", last_error="invalid_grant"
    )
    row = push_now(row)
    assert row.status == "queued" and row.last_error.startswith("Waiting for QuickBooks")
    assert fake.invoice_creates() == []
    enqueued = []
    monkeypatch.setattr(queueing, "enqueue_push", lambda *, push_id: enqueued.append(push_id))
    QuickBooksConnection.objects.filter(pk=1).update(status="connected")
    assert service.resume_waiting_pushes() == 1 and enqueued == [row.pk]
    assert push_now(row).status == "pushed"


def test_admin_actions_push_many_and_show_status(approved, fake, pusher, client):
    client.force_login(pusher)
    url = reverse("admin:invoices_invoice_changelist")
    client.post(url, {"action": "send_to_quickbooks", "_selected_action": [approved["invoice"].pk]})
    row = InvoicePush.objects.get()
    assert row.status == "queued"
    push_now(row)
    html = client.get(url).content.decode()
    assert f"Pushed: {row.doc_number} (id {row.qbo_invoice_id}), draft there" in html


def test_sending_needs_a_two_factor_login_when_the_firm_requires_it(approved, fake, pusher, client):
    """As approving and voiding do: with `Firm.approvers_need_two_factor`, "Send to QuickBooks"
    (the button and the bulk action) is refused after a password-only login, and allowed after
    a login confirmed with the authenticator's code."""
    Firm.objects.filter(pk=1).update(approvers_need_two_factor=True)
    invoice = approved["invoice"]
    send = reverse("admin:invoices_invoice_qbo_send", args=[invoice.pk])
    changelist = reverse("admin:invoices_invoice_changelist")
    bulk = {"action": "send_to_quickbooks", "_selected_action": [invoice.pk]}

    client.force_login(pusher)  # no code given: not verified
    refused = client.post(send, follow=True).content.decode()
    assert "he firm requires a two-factor login to approve, void or send invoices" in refused
    refused = client.post(changelist, bulk, follow=True).content.decode()
    assert "he firm requires a two-factor login to approve, void or send invoices" in refused
    assert InvoicePush.objects.count() == 0

    device = TOTPDevice.objects.create(user=pusher, name="phone", confirmed=True)
    client.logout()
    token = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    login = client.post(
        reverse("admin:login") + "?next=/admin/",
        {"username": "pusher", "password": "pw", "otp_token": token},
    )
    assert login.status_code == 302
    sent = client.post(changelist, bulk, follow=True).content.decode()
    assert "1 invoice(s) queued for QuickBooks" in sent
    row = InvoicePush.objects.get()
    assert row.status == "queued"
    sent = client.post(send, follow=True).content.decode()  # the one already queued
    assert f"{invoice.number}: queued for QuickBooks (request {row.request_id})." in sent
    assert InvoicePush.objects.count() == 1


# --- Status read-back -----------------------------------------------------------------------------


def test_status_read_back_and_push_again_after_a_void_there(approved, fake, pusher):
    row = push_now(queue(approved["invoice"], pusher))
    qbo_id = row.qbo_invoice_id
    fake.mark_sent(qbo_id)
    assert str(service.refresh_statuses()) == "1 QuickBooks invoice(s) checked, 1 changed"
    row.refresh_from_db()
    assert (row.qbo_status, row.sync_token) == ("sent", "1")
    fake.pay(qbo_id, D("100.00"))
    service.refresh_statuses()
    row.refresh_from_db()
    assert row.qbo_status == "partial"
    fake.pay(qbo_id)
    service.refresh_statuses()
    row.refresh_from_db()
    assert row.qbo_status == "paid"
    with pytest.raises(service.PushRefused, match="only after its QuickBooks invoice was voided"):
        service.push_again(invoice=approved["invoice"], user=pusher)
    fake.void_invoice(qbo_id)
    service.refresh_statuses()
    row.refresh_from_db()
    assert row.qbo_status == "voided" and row.status_checked_at is not None
    assert str(service.refresh_statuses()) == "0 QuickBooks invoice(s) checked, 0 changed"

    again = push_now(service.push_again(invoice=approved["invoice"], user=pusher))
    row.refresh_from_db()
    assert (row.status, again.generation, again.status) == ("failed", 2, "pushed")
    assert len(fake.invoices) == 2 and again.qbo_invoice_id != qbo_id
    events = InvoiceEvent.objects.filter(invoice=approved["invoice"], action="qbo_status")
    assert [e.detail["status"]["after"] for e in events.order_by("id")] == [
        "sent",
        "partial",
        "paid",
        "voided",
    ]


def test_deleted_in_quickbooks_reads_back_as_deleted(approved, fake, pusher):
    row = push_now(queue(approved["invoice"], pusher))
    del fake.invoices[row.qbo_invoice_id]
    service.refresh_statuses()
    row.refresh_from_db()
    assert row.qbo_status == "deleted"


def test_push_invoices_command_sends_the_approved_invoices_of_a_month(approved, fake):
    out = StringIO()
    call_command("push_invoices", "--period", "2026-10", "--now", stdout=out)
    row = InvoicePush.objects.get()
    assert out.getvalue() == (
        f"1 invoice(s) queued for QuickBooks.\n{row.request_id}: Pushed {row.doc_number}\n"
    )
    call_command("push_invoices", "--period", "2026-10", "--now", stdout=out)  # nothing new
    assert len(fake.invoices) == 1


def test_setup_schedules_is_idempotent(db):
    call_command("setup_schedules")
    call_command("setup_schedules")
    schedules = {s.name: s for s in Schedule.objects.filter(name__startswith="quickbooks-")}
    assert sorted(schedules) == ["quickbooks-resume-stalled-pushes", "quickbooks-status"]
    status = schedules["quickbooks-status"]
    assert (status.func, status.schedule_type, status.repeats) == (
        "invoices.tasks_quickbooks.refresh_statuses_task",
        Schedule.HOURLY,
        -1,
    )


# --- A batch of 100 within QuickBooks' limits -----------------------------------------------------


def approved_invoice(client, category, month_index: int) -> Invoice:
    start = dt.date(2020 + month_index // 12, month_index % 12 + 1, 1)
    invoice = Invoice.objects.create(
        client=client,
        period_start=start,
        period_end=start,
        status=InvoiceStatus.DRAFT,
        currency="USD",
        issue_date=start,
        due_date=start + dt.timedelta(days=30),
        subtotal=D("150.00"),
        total=D("150.00"),
        drafted_at=timezone.now(),
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        position=1,
        kind="time",
        description="Work",
        category=category,
        quantity=D("1.0000"),
        unit_price=D("150.00"),
        amount=D("150.00"),
        first_date=start,
    )
    # Approved after its line is written, as approval does (an approved invoice's lines are
    # frozen), with the number approval would give it.
    Invoice.objects.filter(pk=invoice.pk).update(
        status=InvoiceStatus.APPROVED, number=f"INV-T-{month_index:04}"
    )
    invoice.refresh_from_db()
    return invoice


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_100_is_pushed_serially_within_the_limits(fake, settings):
    settings.QBO_REQUESTS_PER_MINUTE = 1500  # 25 per second; the fake allows 30 per second
    fake.switches.per_window, fake.switches.window_seconds = 30, 1.0
    fake.switches.latency_seconds = 0.002
    make.firm()
    dev = make.category("development")
    acme = make.client("Acme")
    connect(fake)
    service.map_client(client=acme, customer_id=fake.add_customer("Acme"), display_name="Acme")
    service.map_category(
        category=dev, item_id=fake.add_item("Development"), item_name="Development"
    )
    rows = [
        service.request_push(invoice=approved_invoice(acme, dev, i), user=None) for i in range(100)
    ]
    assert OrmQ.objects.count() == 100  # one task per push, enqueued on commit

    ids = [row.pk for row in rows]

    def worker():  # four django-q2 workers taking tasks at the same time
        try:
            while True:
                try:
                    push_id = ids.pop()
                except IndexError:
                    return
                service.push(push_id=push_id)
        finally:
            connection.close()

    started = timezone.now()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = (timezone.now() - started).total_seconds()
    assert InvoicePush.objects.filter(status="pushed").count() == 100
    assert len(fake.invoices) == 100 and len(fake.invoice_creates()) == 100
    assert fake.throttled == 0 and fake.max_in_flight == 1  # one at a time per company
    assert elapsed >= 99 / 25


def test_the_fake_enforces_ten_concurrent_requests(fake):
    fake.switches.latency_seconds = 1.0  # every admitted request is still running
    access, _ = fake.issue_tokens()
    statuses = []
    together = threading.Barrier(14)

    def ask():
        together.wait()
        response = requests.post(
            f"{fake.base_url}/v3/company/{fake.realm_id}/query",
            params={"minorversion": 75},
            data="SELECT * FROM Item",
            headers={"Authorization": f"Bearer {access}"},
            timeout=5,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=ask) for _ in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 10 + [429] * 4
