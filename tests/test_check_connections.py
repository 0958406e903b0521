"""`manage.py check_connections [--live]` against the local fakes: one line per connection on
stdout (ok, or FAILED with what to do), exit status 1 when any failed, and the last result and
time recorded on each tracker connection and on the QuickBooks connection for the admin."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.contrib import admin
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from integrations.encryption import encrypt
from invoices.models import QuickBooksConnection
from tests.fakes.anthropic_server import fake_anthropic  # noqa: F401 - fixture
from tests.fakes.clockify_server import clockify_server  # noqa: F401 - fixture
from tests.fakes.harvest_server import harvest_server  # noqa: F401 - fixture
from tests.fakes.quickbooks_server import quickbooks_fake  # noqa: F401 - fixture
from tests.fakes.toggl_server import toggl_server  # noqa: F401 - fixture
from timesheets import sync
from timesheets.admin.trackers import TrackerConnectionAdmin
from timesheets.models import TrackerConnection

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def check_settings(settings, monkeypatch):
    settings.BILLABLES_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.TRACKER_MAX_RETRIES = 0
    settings.TRACKER_READ_TIMEOUT_SECONDS = 2
    settings.QBO_CLIENT_ID = ""  # QuickBooks unconfigured unless a test says otherwise
    settings.ANTHROPIC_API_KEY = ""  # the model tier likewise
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to the fakes


def connect(kind, *, name, account_id, token, base_url, reports_url="", **fields):
    conn = TrackerConnection(
        name=name,
        kind=kind,
        account_id=account_id,
        base_url=base_url,
        reports_url=reports_url,
        **fields,
    )
    sync.set_token(connection=conn, token=token)
    conn.save()
    return conn


def check(*args: str) -> tuple[list[str], CommandError | None]:
    out = StringIO()
    try:
        call_command("check_connections", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return out.getvalue().splitlines(), exc
    return out.getvalue().splitlines(), None


@pytest.fixture
def trackers(harvest_server, clockify_server, toggl_server):  # noqa: F811
    harvest_server.add_user(1782884, "Bob", "Powell", "bobpowell@example.com")
    clockify_server.add_user("5a0ab5acb07987125438b60f", "Ann Example", "ann@example.com")
    toggl_server.add_user(toggl_server.me_id, "Ana Pereira", "ana@example.com")
    return {
        "harvest": connect(
            "harvest",
            name="Firm Harvest",
            account_id=harvest_server.account_id,
            token=harvest_server.token,
            base_url=harvest_server.url,
        ),
        "clockify": connect(
            "clockify",
            name="Firm Clockify",
            account_id=clockify_server.workspace_id,
            token=clockify_server.api_key,
            base_url=clockify_server.core_url,
            reports_url=clockify_server.reports_url,
        ),
        "toggl": connect(
            "toggl",
            name="Firm Toggl",
            account_id=str(toggl_server.workspace_id),
            token=toggl_server.token,
            base_url=toggl_server.api_url,
            reports_url=toggl_server.reports_url,
        ),
        "fakes": (harvest_server, clockify_server, toggl_server),
    }


def test_live_check_proves_each_token_with_one_request(trackers):
    harvest, clockify, toggl = trackers["fakes"]
    h, c, t = (trackers[k].pk for k in ("harvest", "clockify", "toggl"))

    lines, failed = check("--live")

    assert failed is None
    assert lines == [
        f"Harvest v2 'Firm Harvest' (#{h}): ok: authenticated as Bob Powell "
        "<bobpowell@example.com>",
        f"Clockify 'Firm Clockify' (#{c}): ok: authenticated as Ann Example <ann@example.com>",
        f"Toggl Track v9 / Reports v3 'Firm Toggl' (#{t}): ok: authenticated as Ana Pereira "
        "<ana@example.com>",
    ]
    assert [r.path for r in harvest.requests] == ["/v2/users/me"]
    assert [r.path for r in clockify.requests] == ["/api/v1/user"]
    assert [r.path for r in toggl.requests] == ["/api/v9/me"]
    recorded = TrackerConnection.objects.get(pk=h)
    assert recorded.last_check_result == ("ok: authenticated as Bob Powell <bobpowell@example.com>")
    assert recorded.last_checked_at is not None
    # The admin's list shows it, with when.
    shown = TrackerConnectionAdmin(TrackerConnection, admin.site).last_check_shown(recorded)
    when = timezone.localtime(recorded.last_checked_at)
    assert (
        shown == f"ok: authenticated as Bob Powell <bobpowell@example.com> ({when:%Y-%m-%d %H:%M})"
    )


def test_a_refused_token_fails_with_what_to_do_and_exit_status_1(trackers):
    harvest, _, toggl = trackers["fakes"]
    harvest.token = "rotated-at-harvest"
    toggl.token = "rotated-at-toggl"

    lines, failed = check("--live")

    assert failed is not None and failed.returncode == 1
    assert str(failed) == "2 of 3 connections failed the check"
    h, t = trackers["harvest"].pk, trackers["toggl"].pk
    assert lines[0] == (
        f"Harvest v2 'Firm Harvest' (#{h}): FAILED: the tracker refused the token or account "
        "id (Harvest refused the token or account id: HTTP 401 invalid_token: The access token "
        "provided is expired, revoked, malformed or invalid for other reasons.); save a new token"
    )
    assert lines[1].endswith("ok: authenticated as Ann Example <ann@example.com>")
    assert lines[2].startswith(f"Toggl Track v9 / Reports v3 'Firm Toggl' (#{t}): FAILED: ")
    assert "save a new token" in lines[2]
    assert TrackerConnection.objects.get(pk=h).last_check_result.startswith(
        "failed: the tracker refused the token"
    )


def test_offline_check_sends_nothing_and_finds_unreadable_tokens_and_bad_options(trackers):
    harvest, clockify, toggl = trackers["fakes"]
    TrackerConnection.objects.filter(pk=trackers["clockify"].pk).update(
        token_encrypted="not a fernet token"
    )
    TrackerConnection.objects.filter(pk=trackers["toggl"].pk).update(options={"page_size": 0})

    lines, failed = check()

    assert failed is not None
    assert lines[0].endswith("ok: options valid, token saved and readable")
    assert "cannot be decrypted with BILLABLES_ENCRYPTION_KEYS" in lines[1]
    assert lines[2].endswith(
        "FAILED: invalid options: page_size must be a whole number from 1 to 1000; fix the "
        "options on the connection"
    )
    assert harvest.requests == clockify.requests == toggl.requests == []


def test_an_unreachable_tracker_names_the_url_to_check(db):
    conn = connect(
        "harvest",
        name="Gone",
        account_id="1",
        token="t",
        base_url="http://127.0.0.1:9/v2",  # the discard port: nothing listens
    )
    lines, failed = check("--live")
    assert failed is not None
    assert lines == [
        f"Harvest v2 'Gone' (#{conn.pk}): FAILED: could not reach the tracker (Harvest did not "
        "answer after 1 attempts (ConnectionError from http://127.0.0.1:9/v2)); check the base "
        "URL and the network"
    ]


@pytest.fixture
def quickbooks(quickbooks_fake, settings):  # noqa: F811
    fake = quickbooks_fake
    settings.QBO_CLIENT_ID = fake.client_id
    settings.QBO_CLIENT_SECRET = fake.client_secret
    settings.QBO_ENVIRONMENT = f"{fake.base_url}/.well-known/openid_configuration"
    settings.QBO_API_BASE_URL = f"{fake.base_url}/v3"
    settings.QBO_TIMEOUT_SECONDS = (2, 5)
    settings.QBO_REQUESTS_PER_MINUTE = 600_000
    access, refresh = fake.issue_tokens()
    QuickBooksConnection.objects.create(
        pk=1,
        environment="custom",
        realm_id=fake.realm_id,
        status=QuickBooksConnection.Status.CONNECTED,
        access_token_encrypted=encrypt(access),
        refresh_token_encrypted=encrypt(refresh),
        access_token_expires_at=timezone.now() + dt.timedelta(hours=1),
        refresh_token_expires_at=timezone.now() + dt.timedelta(days=100),
        connected_at=timezone.now(),
    )
    return fake


def test_quickbooks_live_check_reads_company_info(quickbooks):
    lines, failed = check("--live")
    assert failed is None
    expiry = (timezone.now() + dt.timedelta(days=100)).date()
    assert lines == [
        f"QuickBooks: ok: read company 'Sandbox Company_US_1' ({quickbooks.realm_id}), "
        f"refresh token valid until {expiry:%Y-%m-%d}"
    ]
    [read] = quickbooks.api_requests("GET")
    assert read.path.endswith(f"/companyinfo/{quickbooks.realm_id}")


def test_quickbooks_expired_refresh_token_asks_for_a_reconnect(quickbooks):
    QuickBooksConnection.objects.filter(pk=1).update(
        refresh_token_expires_at=timezone.now() - dt.timedelta(days=1)
    )
    lines, failed = check()
    assert failed is not None
    assert lines == ["QuickBooks: FAILED: the refresh token expired; connect QuickBooks again"]
    assert QuickBooksConnection.objects.get(pk=1).last_check_result == (
        "failed: the refresh token expired; connect QuickBooks again"
    )


def test_quickbooks_last_check_is_kept_and_shown_on_its_admin_page(quickbooks, admin_client):
    page = reverse("admin:invoices_quickbooksconnection_changelist")
    assert b"Last check: never checked" in admin_client.get(page).content

    check("--live")

    conn = QuickBooksConnection.objects.get(pk=1)
    assert conn.last_check_result.startswith("ok: read company 'Sandbox Company_US_1'")
    assert conn.last_checked_at is not None
    when = timezone.localtime(conn.last_checked_at)
    shown = f"Last check: {conn.last_check_result} ({when:%Y-%m-%d %H:%M})"
    assert shown.replace("'", "&#x27;").encode() in admin_client.get(page).content


def test_nothing_configured_says_so(db):
    lines, failed = check()
    assert (lines, failed) == (["No connection is configured."], None)


@pytest.fixture
def claude(fake_anthropic, settings):  # noqa: F811
    settings.ANTHROPIC_API_KEY = fake_anthropic.api_key
    settings.ANTHROPIC_BASE_URL = fake_anthropic.base_url
    settings.ANTHROPIC_MAX_RETRIES = 0
    settings.ANTHROPIC_TIMEOUT = 5
    return fake_anthropic


@pytest.mark.parametrize("model", ["claude-haiku-5-5", "claude-sonnet-5-5"])
def test_claude_live_check_classifies_a_fixed_note_with_the_configured_model(
    claude, settings, model
):
    settings.CLASSIFIER_MODEL = model
    lines, failed = check("--live")
    assert failed is None
    [line] = lines
    assert line.startswith(f"Claude: ok: {model} classified a fixed note as ")
    [request] = claude.requests
    assert request["body"]["model"] == model


def test_claude_unknown_model_fails_offline(claude, settings):
    settings.CLASSIFIER_MODEL = "claude-nonexistent"
    lines, failed = check()
    assert failed is not None
    assert lines == [
        "Claude: FAILED: CLASSIFIER_MODEL 'claude-nonexistent' is not in the capability table "
        "(integrations/claude/capabilities.py): the request shape it accepts is unknown; use a "
        "listed model or add it there"
    ]
    assert claude.requests == []


def test_claude_bad_key_says_which_setting(claude, settings):
    settings.ANTHROPIC_API_KEY = "wrong-key"
    lines, failed = check("--live")
    assert failed is not None
    [line] = lines
    assert line.startswith("Claude: FAILED: the key was refused or has no credit (")
    assert line.endswith("); check ANTHROPIC_API_KEY")
