"""Production readiness (issue 7): settings in production mode, structured logs without
secrets, the health endpoints and each failure they report, a backup and restore round trip on
the real PostgreSQL, the data-retention commands, and two django-q2 clusters sharing one
database without doing any work twice.

Settings are read once per process, so production mode is tested in subprocesses started with
a production-like environment (the one docs/deployment.md shows).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.urls import path
from django.utils import timezone
from django_q import conf as django_q_conf
from django_q.models import OrmQ, Task

from billing_site import structured_logging as logs
from integrations.encryption import decrypt, encrypt
from invoices.models import Invoice, InvoiceEvent, QuickBooksConnection
from timesheets.models import Client, TimeEntry

BASE_DIR = Path(settings.BASE_DIR)
NORTHWIND = BASE_DIR / "data" / "northwind"
EXPORTS = [
    "harvest_detailed_time_2026-10.csv",
    "clockify_detailed_report_2026-10.csv",
    "toggl_detailed_2026-10.csv",
]


def production_env(**overrides: str) -> dict[str, str]:
    """A production-like environment: what docs/deployment.md calls the minimum, behind a
    TLS-terminating proxy."""
    env = dict(os.environ)
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="billing.example.com",
        CSRF_TRUSTED_ORIGINS="https://billing.example.com",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto,https",
        BILLABLES_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
    env.update(overrides)
    return env


def run_python(code: str, env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "billing_site.settings"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage(*args: str, env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name, None) for name in [
    "DEBUG", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS", "ALLOWED_HOSTS", "LOG_FORMAT",
    "SESSION_COOKIE_AGE", "SILENCED_SYSTEM_CHECKS"]}
    | {"static": s.STORAGES["staticfiles"]["BACKEND"], "middleware": s.MIDDLEWARE}))
"""


# --- Settings in production mode -----------------------------------------------------------


def test_check_deploy_reports_no_issues_in_production_mode():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_still_catches_an_insecure_configuration():
    """The clean result above is earned, not silenced: DEBUG on and the development key fail."""
    env = production_env(DEBUG="true", SECRET_KEY="django-insecure-local-development-only")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG
    assert "security.W009" in result.stderr  # SECRET_KEY


def test_check_deploy_catches_missing_or_broken_encryption_keys():
    missing = manage("check", "--deploy", env=production_env(BILLABLES_ENCRYPTION_KEYS=""))
    assert "billables.W001" in missing.stderr
    broken = manage("check", "--deploy", env=production_env(BILLABLES_ENCRYPTION_KEYS="nonsense"))
    assert broken.returncode != 0  # an error stops the release step
    assert "billables.E002" in broken.stderr


# The key settings.py falls back to: in the repository, so anyone can sign a session with it.
PUBLIC_SECRET_KEY = "django-insecure-local-development-only"
# No database answers here: a refused start must stop before it touches one.
NO_DATABASE = "postgres://postgres@127.0.0.1:1/billables"


def without_secret_key(**overrides: str) -> dict[str, str]:
    env = production_env(**overrides)
    env.pop("SECRET_KEY")
    return env


PUBLIC_KEY_ENVIRONMENTS = {
    "missing": lambda: without_secret_key(DATABASE_URL=NO_DATABASE),
    "empty": lambda: production_env(SECRET_KEY="", DATABASE_URL=NO_DATABASE),
    "the development key": lambda: production_env(
        SECRET_KEY=PUBLIC_SECRET_KEY, DATABASE_URL=NO_DATABASE
    ),
    "a generated insecure key": lambda: production_env(
        SECRET_KEY="django-insecure-" + secrets.token_urlsafe(50), DATABASE_URL=NO_DATABASE
    ),
    "the development key as a fallback": lambda: production_env(
        SECRET_KEY_FALLBACKS=PUBLIC_SECRET_KEY, DATABASE_URL=NO_DATABASE
    ),
}


@pytest.mark.parametrize("case", PUBLIC_KEY_ENVIRONMENTS)
def test_release_refuses_a_missing_or_public_secret_key(case):
    """Issue 14 item 2: with DEBUG off, `release` used to exit 0 on the public key."""
    result = manage("release", "--no-collectstatic", env=PUBLIC_KEY_ENVIRONMENTS[case]())
    assert result.returncode != 0, result.stdout + result.stderr
    assert "billables.E004" in result.stderr, result.stderr
    assert "SECRET_KEY" in result.stderr
    assert "release done" not in result.stdout


@pytest.mark.parametrize("case", PUBLIC_KEY_ENVIRONMENTS)
def test_the_web_application_refuses_a_missing_or_public_secret_key(case):
    """What gunicorn loads (billing_site.wsgi) raises instead of serving on a public key."""
    result = run_python("import billing_site.wsgi", PUBLIC_KEY_ENVIRONMENTS[case]())
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize("case", PUBLIC_KEY_ENVIRONMENTS)
def test_the_task_cluster_refuses_a_missing_or_public_secret_key(case):
    """The workers (`qcluster`) sign and read their tasks with SECRET_KEY: with DEBUG off they
    refuse a public key as the web application does, before reaching the database."""
    result = manage("qcluster", env=PUBLIC_KEY_ENVIRONMENTS[case](), timeout=60)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr  # a message to act on, not a crash


@pytest.mark.slow
def test_gunicorn_does_not_start_on_the_public_secret_key(tmp_path):
    env = without_secret_key(
        DATABASE_URL=NO_DATABASE, WEB_CONCURRENCY="1", GUNICORN_BIND="127.0.0.1:0"
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = subprocess.run(
        [str(gunicorn), "-c", "deploy/gunicorn.conf.py", "--preload"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr


def test_a_real_secret_key_still_starts_the_web_application():
    result = run_python("import billing_site.wsgi", production_env(DATABASE_URL=NO_DATABASE))
    assert result.returncode == 0, result.stderr


def test_debug_mode_still_runs_on_the_development_key():
    """bin/demo and local work: DEBUG on, no SECRET_KEY, the fallback key, no error."""
    env = dict(os.environ, DEBUG="true", DATABASE_URL=NO_DATABASE)
    env.pop("SECRET_KEY", None)
    result = run_python(
        "import billing_site.wsgi; from django.conf import settings; print(settings.SECRET_KEY)",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == PUBLIC_SECRET_KEY
    checked = manage("check", "--deploy", env=env)
    assert "billables.E004" not in checked.stderr


def test_production_settings_come_from_the_environment():
    result = run_python(SHOW_SETTINGS, production_env())
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["DEBUG"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SECURE_SSL_REDIRECT"] is True  # on once the proxy header is configured
    assert values["SECURE_HSTS_SECONDS"] == 3600
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://billing.example.com"]
    assert values["ALLOWED_HOSTS"] == ["billing.example.com"]
    assert values["LOG_FORMAT"] == "json"
    assert values["SESSION_COOKIE_AGE"] == 8 * 3600
    assert values["static"] == "whitenoise.storage.CompressedStaticFilesStorage"
    middleware = values["middleware"]
    assert middleware[:4] == [
        "billing_site.structured_logging.RequestIdMiddleware",
        "billing_site.health.ProbeMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
    ]
    # Preload is opted into, not defaulted: then the check is not silenced either.
    opted_in = json.loads(run_python(SHOW_SETTINGS, production_env(SECURE_HSTS_PRELOAD="1")).stdout)
    assert opted_in["SECURE_HSTS_PRELOAD"] is True
    assert opted_in["SILENCED_SYSTEM_CHECKS"] == []


def test_the_demo_settings_keep_local_http_working():
    """bin/demo sets DEBUG=true: plain HTTP on localhost, readable logs, no HSTS."""
    env = dict(os.environ, DEBUG="true")
    for name in ("SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "LOG_FORMAT"):
        env.pop(name, None)
    values = json.loads(run_python(SHOW_SETTINGS, env).stdout)
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["LOG_FORMAT"] == "plain"


def test_a_malformed_proxy_header_setting_is_refused():
    result = run_python(SHOW_SETTINGS, production_env(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"))
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER must be 'Header-Name,value'" in result.stderr


# --- Structured logs -----------------------------------------------------------------------


def _format(record: logging.LogRecord) -> dict:
    logs.ContextFilter().filter(record)
    return json.loads(logs.JsonFormatter().format(record))


def _record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord(
        "billables.test", logging.ERROR, __file__, 1, message, args, exc_info
    )
    record.__dict__.update(extra)
    return record


def test_a_json_log_line_carries_the_request_id_and_never_a_secret(settings):
    settings.SECRET_KEY = "s3cr3t-" + secrets.token_urlsafe(30)
    settings.ANTHROPIC_API_KEY = "sk-ant-" + secrets.token_urlsafe(20)
    ciphertext = Fernet(Fernet.generate_key()).encrypt(b"refresh-token").decode()
    token = logs.request_id_var.set("req-42")
    try:
        try:
            raise RuntimeError(f"refused with {settings.ANTHROPIC_API_KEY}")
        except RuntimeError:
            record = _record(
                "key %s, header Authorization: Bearer abcdefghijk123, refresh_token=xyz987654, "
                "stored %s",
                settings.SECRET_KEY,
                ciphertext,
                exc_info=sys.exc_info(),
                request=object(),  # Django attaches the request to error records
                status_code=500,
            )
        line = _format(record)
    finally:
        logs.request_id_var.reset(token)
    assert line["request_id"] == "req-42"
    assert line["task_id"] == ""
    assert line["level"] == "ERROR"
    assert line["status_code"] == 500
    assert "request" not in line
    text = json.dumps(line)
    for secret in (settings.SECRET_KEY, settings.ANTHROPIC_API_KEY, ciphertext, "xyz987654"):
        assert secret not in text
    assert "abcdefghijk123" not in text
    assert line["message"].count("[redacted]") == 4
    assert "RuntimeError: refused with [redacted]" in line["exception"]


def test_requests_get_an_id_in_the_response_and_a_forged_one_is_replaced(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.9")
    assert response["X-Request-ID"] == "lb-7f3a.9"
    response = client.get("/healthz", HTTP_X_REQUEST_ID='x"\n{"level": "INFO"}')
    assert len(response["X-Request-ID"]) == 32  # a fresh uuid4 hex instead


def log_inside_a_task(word: str) -> str:
    logging.getLogger("billables.test").warning("task says %s", word)
    return word


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(logs.ContextFilter())

    def emit(self, record):
        self.records.append(record)


@pytest.mark.django_db
def test_task_logs_carry_the_task_id_and_the_id_of_the_request_that_queued_it():
    from django_q.tasks import async_task

    handler = _Collect()
    logger = logging.getLogger("billables.test")
    logger.addHandler(handler)
    token = logs.request_id_var.set("req-from-admin")
    try:
        task_id = async_task(f"{__name__}.log_inside_a_task", "hello", sync=True)
    finally:
        logs.request_id_var.reset(token)
        logger.removeHandler(handler)
    [record] = [r for r in handler.records if r.getMessage() == "task says hello"]
    assert record.task_id == task_id
    assert record.request_id == "req-from-admin"
    # After the task the context is the caller's again.
    assert logs.task_id_var.get() == ""


def boom_view(request):
    api_key = settings.ANTHROPIC_API_KEY  # noqa: F841 - a local the technical page would show
    raise RuntimeError("the vendor said no")


urlpatterns = [path("boom", boom_view)]


@pytest.mark.django_db
def test_an_error_page_shows_no_settings_or_secrets(client, settings):
    settings.ROOT_URLCONF = __name__
    settings.ANTHROPIC_API_KEY = "sk-ant-" + secrets.token_urlsafe(20)
    client.raise_request_exception = False
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.content.decode()
    assert settings.ANTHROPIC_API_KEY not in body
    assert settings.SECRET_KEY not in body
    assert "Traceback" not in body


@pytest.mark.django_db
def test_stored_credentials_never_appear_in_the_admin(client, settings):
    settings.BILLABLES_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    access, refresh = "access-" + secrets.token_hex(8), "refresh-" + secrets.token_hex(8)
    conn = QuickBooksConnection.objects.create(
        pk=1,
        realm_id="123",
        status=QuickBooksConnection.Status.CONNECTED,
        access_token_encrypted=encrypt(access),
        refresh_token_encrypted=encrypt(refresh),
    )
    pages = [
        "/admin/invoices/quickbooksconnection/",
        f"/admin/invoices/quickbooksconnection/{conn.pk}/change/",
    ]
    forbidden = [access, refresh, conn.access_token_encrypted, conn.refresh_token_encrypted]
    tracker = tracker_connection_model()
    if tracker is not None:
        token = "tracker-" + secrets.token_hex(8)
        row = tracker.objects.create(
            name="Harvest", kind="harvest", account_id="1", token_encrypted=encrypt(token)
        )
        label = tracker._meta.model_name
        pages += [f"/admin/timesheets/{label}/", f"/admin/timesheets/{label}/{row.pk}/change/"]
        forbidden += [token, row.token_encrypted]
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    shown = 0
    for page in pages:
        response = client.get(page, follow=True)
        if response.status_code == 404:
            continue  # not registered in the admin: nothing to leak there
        assert response.status_code == 200, page
        shown += 1
        body = response.content.decode()
        for secret in forbidden:
            assert secret not in body, page
    assert shown >= 2


# --- Health endpoints ----------------------------------------------------------------------


def tracker_connection_model():
    from billing_site.health import tracker_connection_model as model

    return model()


def test_healthz_answers_whatever_the_host_and_without_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["billing.example.com"]
    # A load balancer probing the container by IP over plain HTTP.
    response = client.get("/healthz", HTTP_HOST="10.0.3.17:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")
    # Everything else is still redirected and host-checked.
    assert client.get("/admin/", HTTP_HOST="billing.example.com").status_code == 301
    assert client.get("/admin/", HTTP_HOST="10.0.3.17:8000", secure=True).status_code == 400


@pytest.mark.django_db
def test_readyz_is_200_when_everything_is_fine(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"] == {"ok": True}
    assert checks["migrations"] == {"ok": True, "unapplied": []}
    assert checks["queue"]["ok"] and checks["queue"]["waiting"] == 0
    assert checks["failed_tasks"] == {"ok": True, "last_hour": 0, "max": 0, "recent": []}
    if tracker_connection_model() is not None:
        assert checks["sync"] == {"ok": True, "max_minutes": 180, "connections": []}


def test_readyz_is_503_when_the_database_is_unreachable():
    """A real unreachable server (nothing listens on port 1), in a fresh process."""
    code = """
import json, django
django.setup()
from django.test import Client
c = Client()
ready = c.get("/readyz")
print(json.dumps({"healthz": c.get("/healthz").status_code, "readyz": ready.status_code,
                  "body": ready.json()}))
"""
    env = production_env(DATABASE_URL="postgres://postgres@127.0.0.1:1/billables")
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["healthz"] == 200  # the process is up: don't restart it
    assert answer["readyz"] == 503
    checks = answer["body"]["checks"]
    assert checks["database"] == {"ok": False, "error": "OperationalError"}
    assert checks["migrations"] == {"ok": False, "error": "skipped: database unreachable"}
    assert answer["body"]["status"] == "failing"


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_unapplied(client):
    """The newest migration of the billing app is marked unapplied (rolled back after the test),
    as during an upgrade whose release step has not run yet."""
    loader = MigrationLoader(connection)
    leaf = max(name for app, name in loader.graph.leaf_nodes() if app == "invoices")
    MigrationRecorder(connection).migration_qs.filter(app="invoices", name=leaf).delete()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {
        "ok": False,
        "unapplied": [f"invoices.{leaf}"],
    }
    # A load balancer's narrower question fails too: this code must not serve that schema.
    assert client.get("/readyz?scope=web").status_code == 503


@pytest.mark.django_db
def test_readyz_is_503_when_the_oldest_queued_task_waits_too_long(client):
    now = timezone.now()
    OrmQ.objects.create(key="billables", payload="signed-task", lock=now - dt.timedelta(minutes=2))
    OrmQ.objects.create(key="billables", payload="signed-task", lock=now + dt.timedelta(minutes=9))
    queue = client.get("/readyz").json()["checks"]["queue"]
    assert queue["ok"] and queue["waiting"] == 1 and queue["running"] == 1

    OrmQ.objects.create(key="billables", payload="signed-task", lock=now - dt.timedelta(minutes=25))
    response = client.get("/readyz")
    assert response.status_code == 503
    queue = response.json()["checks"]["queue"]
    assert queue["ok"] is False
    assert queue["waiting"] == 2
    assert 25 * 60 <= queue["oldest_waiting_seconds"] < 26 * 60
    assert queue["max_seconds"] == 600
    # Web traffic is not stopped for a stuck queue.
    assert client.get("/readyz?scope=web").status_code == 200


@pytest.mark.django_db
def test_readyz_is_503_after_a_task_failed_in_the_last_hour(client, settings):
    now = timezone.now()

    def failed(minutes_ago: int, func: str) -> None:
        at = now - dt.timedelta(minutes=minutes_ago)
        Task.objects.create(
            id=uuid.uuid4().hex, name=func, func=func, started=at, stopped=at, success=False
        )

    failed(90, "invoices.tasks_quickbooks.push_invoice_task")  # over an hour ago: not counted
    assert client.get("/readyz").status_code == 200
    failed(10, "timesheets.tasks.sync_connection_task")
    response = client.get("/readyz")
    assert response.status_code == 503
    check = response.json()["checks"]["failed_tasks"]
    assert check["ok"] is False and check["last_hour"] == 1
    assert [t["func"] for t in check["recent"]] == ["timesheets.tasks.sync_connection_task"]
    settings.HEALTH_MAX_FAILED_TASKS = 1  # a firm may tolerate some
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_503_when_a_tracker_connection_has_not_synced_for_too_long(client):
    model = tracker_connection_model()
    if model is None:
        pytest.skip("tracker sync is not installed")
    now = timezone.now()
    fresh = model.objects.create(
        name="Harvest", kind="harvest", account_id="1", last_success_at=now
    )
    model.objects.create(  # switched off: not watched
        name="Old Toggl",
        kind="toggl",
        account_id="2",
        is_enabled=False,
        last_success_at=now - dt.timedelta(days=30),
    )
    assert client.get("/readyz").status_code == 200
    stale = model.objects.create(
        name="Clockify",
        kind="clockify",
        account_id="3",
        last_success_at=now - dt.timedelta(hours=5),
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    rows = {row["id"]: row for row in response.json()["checks"]["sync"]["connections"]}
    assert set(rows) == {fresh.pk, stale.pk}
    assert rows[fresh.pk]["ok"] is True
    assert rows[stale.pk]["ok"] is False
    assert rows[stale.pk]["minutes_since_success"] == 300
    assert "Clockify" not in response.content.decode()  # ids, not names, on an open endpoint


# --- Backup and restore --------------------------------------------------------------------

# Exact row counts of every table, in one query (the runbook's verification step uses it).
ROW_COUNTS_SQL = """
SELECT table_name,
       (xpath('/row/c/text()', query_to_xml(
           format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name),
           false, true, '')))[1]::text::bigint AS row_count
FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
ORDER BY table_name
"""
INVOICE_TOTALS_SQL = """
SELECT id, status, currency, subtotal::text, total::text FROM invoices_invoice ORDER BY id
"""


def load_northwind_month() -> None:
    out = StringIO()
    call_command("import_rules", str(NORTHWIND / "rules.yaml"), stdout=out)
    call_command("import_entries", *(str(NORTHWIND / name) for name in EXPORTS), stdout=out)
    call_command("draft_invoices", "--period", "2026-10", stdout=out)


def _psql_url(name: str) -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgresql://{user}@{host}:{port}/{name}"


def _query(dbname: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(_psql_url(dbname), autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.mark.django_db(transaction=True)
def test_backup_and_restore_round_trip_keeps_every_row_and_every_total(tmp_path):
    load_northwind_month()
    source = settings.DATABASES["default"]["NAME"]
    restored = f"{source}_restored_{os.getpid()}"
    dump = tmp_path / "billables.dump"

    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", _psql_url(source)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    _query("postgres", f'DROP DATABASE IF EXISTS "{restored}"')
    _query("postgres", f'CREATE DATABASE "{restored}"')
    try:
        subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--exit-on-error",
                f"--dbname={_psql_url(restored)}",
                str(dump),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        before_counts = _query(source, ROW_COUNTS_SQL)
        after_counts = _query(restored, ROW_COUNTS_SQL)
        assert after_counts == before_counts
        counts = dict(before_counts)
        assert counts["invoices_invoice"] == 4
        assert counts["timesheets_timeentry"] == TimeEntry._base_manager.count() == 305
        before_totals = _query(source, INVOICE_TOTALS_SQL)
        assert _query(restored, INVOICE_TOTALS_SQL) == before_totals
        assert len(before_totals) == 4
        assert _query(restored, "SELECT sum(total)::text FROM invoices_invoice") == _query(
            source, "SELECT sum(total)::text FROM invoices_invoice"
        )
        # The runbook's last check: the restored schema is exactly what the code expects.
        check = manage(
            "migrate",
            "--check",
            env=dict(os.environ, DATABASE_URL=_psql_url(restored)),
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        _query("postgres", f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')


# --- Data retention and key rotation -------------------------------------------------------


@pytest.mark.django_db
def test_reencrypt_secrets_moves_every_credential_to_the_newest_key(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.BILLABLES_ENCRYPTION_KEYS = [old_key]
    conn = QuickBooksConnection.objects.create(
        pk=1,
        access_token_encrypted=encrypt("access-1"),
        refresh_token_encrypted=encrypt("refresh-1"),
    )
    tracker = tracker_connection_model()
    if tracker is not None:
        row = tracker.objects.create(
            name="Harvest", kind="harvest", account_id="1", token_encrypted=encrypt("harvest-1")
        )
    settings.BILLABLES_ENCRYPTION_KEYS = [new_key, old_key]
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)
    expected = 3 if tracker is not None else 2
    assert f"re-encrypted {expected} value(s); 0 already on the newest key." in out.getvalue()

    settings.BILLABLES_ENCRYPTION_KEYS = [new_key]  # the old key is dropped
    conn.refresh_from_db()
    assert decrypt(conn.access_token_encrypted) == "access-1"
    assert decrypt(conn.refresh_token_encrypted) == "refresh-1"
    if tracker is not None:
        row.refresh_from_db()
        assert decrypt(row.token_encrypted) == "harvest-1"
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)  # running it again changes nothing
    assert f"re-encrypted 0 value(s); {expected} already on the newest key." in out.getvalue()


@pytest.mark.django_db
def test_reencrypt_secrets_reports_values_no_key_can_read_and_keeps_them(settings):
    settings.BILLABLES_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    QuickBooksConnection.objects.create(pk=1, access_token_encrypted=encrypt("access-1"))
    before = QuickBooksConnection.objects.get().access_token_encrypted
    settings.BILLABLES_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the key was lost
    with pytest.raises(CommandError, match="1 value\\(s\\) cannot be decrypted"):
        call_command("reencrypt_secrets", stdout=StringIO())
    assert QuickBooksConnection.objects.get().access_token_encrypted == before


@pytest.mark.django_db
def test_export_client_data_holds_entries_invoices_lines_and_audit_trail(tmp_path):
    load_northwind_month()
    from invoices.approval import void_invoice

    acme = Client.objects.get(name="Acme Legal LLP")
    invoice = acme.invoices.get()
    void_invoice(invoice=invoice, user=User.objects.create_superuser("ops"), reason="re-issue")
    target = tmp_path / "acme.json"
    call_command("export_client_data", "acme legal llp", "-o", str(target), stderr=StringIO())
    document = json.loads(target.read_text())

    assert document["format"] == "billables.client-data/1"
    assert document["client"]["name"] == "Acme Legal LLP"
    entries = TimeEntry.objects.filter(client=acme)
    assert sorted(e["key"] for e in document["entries"]) == sorted(e.key for e in entries)
    assert {e["client_id"] for e in document["entries"]} == {acme.pk}
    assert all("classification" in e for e in document["entries"])
    [exported] = document["invoices"]
    assert exported["number"] == invoice.number
    assert exported["status"] == "void"
    assert exported["total"] == str(invoice.total)
    assert sum(len(line["entries"]) for line in exported["lines"]) > 0
    assert sum(Decimal(line["amount"]) for line in exported["lines"]) == invoice.total
    events = document["audit_trail"]["invoice_events"]
    assert [e["action"] for e in events] == list(
        InvoiceEvent.objects.filter(invoice=invoice)
        .order_by("at", "id")
        .values_list("action", flat=True)
    )
    assert events[-1]["actor"] == "ops"
    if apps.is_installed("pghistory"):
        tables = {row["table"] for row in document["audit_trail"]["row_history"]}
        assert "invoices.InvoiceHistory" in tables
    # Nothing of another client.
    text = target.read_text()
    assert "Globex Retail" not in text
    with pytest.raises(CommandError, match="no client named"):
        call_command("export_client_data", "Nobody Inc", stdout=StringIO())


@pytest.mark.django_db
def test_purge_raw_payloads_keeps_what_approved_invoices_rest_on():
    load_northwind_month()
    old = timezone.now() - dt.timedelta(days=120)
    recent = timezone.now() - dt.timedelta(days=5)
    locked, released, fresh = TimeEntry.objects.order_by("id")[:3]
    change = {"notes": "changed at the source", "duration_seconds": 3600}
    TimeEntry.objects.filter(pk=locked.pk).update(
        locked=True, pending_source_change=change, updated_at=old
    )
    TimeEntry.objects.filter(pk=released.pk).update(pending_source_change=change, updated_at=old)
    TimeEntry.objects.filter(pk=fresh.pk).update(pending_source_change=change, updated_at=recent)
    at = timezone.now() - dt.timedelta(days=100)
    Task.objects.create(
        id=uuid.uuid4().hex, name="old", func="x.y", started=at, stopped=at, success=True
    )
    Task.objects.create(
        id=uuid.uuid4().hex, name="new", func="x.y", started=recent, stopped=recent, success=False
    )
    totals = sorted(Invoice.objects.values_list("total", flat=True))

    out = StringIO()
    call_command("purge_raw_payloads", "--dry-run", stdout=out)
    assert "would purge 1: recorded source changes" in out.getvalue()
    assert TimeEntry.objects.get(pk=released.pk).pending_source_change == change

    out = StringIO()
    call_command("purge_raw_payloads", "--older-than-days", "90", stdout=out)
    assert "purged 1: recorded source changes" in out.getvalue()
    assert "purged 1: django-q2 task records (deleted)" in out.getvalue()
    assert TimeEntry.objects.get(pk=locked.pk).pending_source_change == change  # on an invoice
    assert TimeEntry.objects.get(pk=released.pk).pending_source_change is None
    assert TimeEntry.objects.get(pk=fresh.pk).pending_source_change == change  # too young
    assert list(Task.objects.values_list("name", flat=True)) == ["new"]
    # Invoices are untouched.
    assert sorted(Invoice.objects.values_list("total", flat=True)) == totals


# --- Scale-out: two clusters, one database -------------------------------------------------

CLUSTER_SETTINGS = """
from billing_site.settings import *  # noqa: F403

# The QuickBooks adapter's endpoints and pacing are settings (not environment variables):
# point them at the fake, as tests/test_quickbooks.py does in-process.
QBO_ENVIRONMENT = {qbo_url!r} + "/.well-known/openid_configuration"
QBO_API_BASE_URL = {qbo_url!r} + "/v3"
QBO_TIMEOUT_SECONDS = (2, 5)
QBO_REQUESTS_PER_MINUTE = 600_000
QBO_RETRY_BASE_SECONDS = 0.01
QBO_RETRY_MAX_SECONDS = 0.05
Q_CLUSTER = {{**Q_CLUSTER, "poll": 0.2}}  # noqa: F405
"""

PUSH_CLIENTS = ["Push Co 1", "Push Co 2", "Push Co 3"]


def _start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=BASE_DIR,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers are stopped with it, as a process group
        )


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def _wait_for(condition, *, timeout: float, what: str, logs_: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(
        f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-20:]) for p in logs_
    )
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _push_month() -> list[Invoice]:
    """Three clients with September work classified by a rule, drafted and approved, mapped
    to QuickBooks customers and items in the fake."""
    from invoices.approval import approve_invoice
    from invoices.drafting import Period, draft_invoices
    from invoices.models import Category
    from tests import billing_fixtures as make

    dev = Category.objects.get(key="development")
    make.rule(dev, task="Dev")
    ana = make.person("Push Person", "Partner", email="push.person@example.com")
    clients = []
    for n, name in enumerate(PUSH_CLIENTS, start=1):
        clients.append(make.client(name))
        project = make.project(clients[-1], code=f"PUSH{n}")
        for day in (3, 10, 17):
            make.entry(project, ana, day=dt.date(2026, 9, day), minutes=30 * n, task="Dev")
    period = Period.month("2026-09")
    drafted = draft_invoices(period=period, client_ids=[c.pk for c in clients]).invoices
    approver = User.objects.create_superuser("approver", "approver@example.com", "pw")
    return [approve_invoice(invoice=invoice, user=approver) for invoice in drafted]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_clusters_on_one_database_never_classify_sync_or_push_twice(
    tmp_path, settings, monkeypatch
):
    """Two `manage.py qcluster` processes (two workers each) share the one PostgreSQL and
    its ORM queue. Every job is queued twice, as at-least-once delivery may do: the model tier
    for each client, the sync of a tracker connection, the push of each approved invoice.
    Afterwards every queued task ran in exactly one process, and the work happened once: each
    entry was sent to the model once, each tracker entry was stored once, each invoice was
    created in QuickBooks once."""
    from django_q.tasks import async_task

    from invoices import quickbooks
    from invoices.models import (
        Category,
        Classification,
        CustomerMapping,
        InvoicePush,
        ItemMapping,
        ModelRequest,
    )
    from tests import billing_fixtures as make
    from tests.fakes import anthropic_server, harvest_server, quickbooks_server
    from timesheets import sync
    from timesheets.models import SyncRun, TrackerConnection

    key = Fernet.generate_key().decode()
    settings.BILLABLES_ENCRYPTION_KEYS = [key]
    claude, claude_server = anthropic_server.start()
    qbo, qbo_server = quickbooks_server.start()
    harvest, harvest_srv = harvest_server.start()
    processes: list[subprocess.Popen] = []
    logs_ = [tmp_path / "cluster-a.log", tmp_path / "cluster-b.log"]
    try:
        # The firm: Northwind's rules and October exports (undecided notes for the model),
        # three approved September invoices for QuickBooks, a Harvest account to sync.
        load_northwind_month()
        invoices = _push_month()
        access, refresh = qbo.issue_tokens()
        QuickBooksConnection.objects.create(
            pk=1,
            environment="custom",
            realm_id=qbo.realm_id,
            status=QuickBooksConnection.Status.CONNECTED,
            access_token_encrypted=encrypt(access),
            refresh_token_encrypted=encrypt(refresh),
            access_token_expires_at=timezone.now() + dt.timedelta(hours=1),
            connected_at=timezone.now(),
        )
        for invoice in invoices:
            CustomerMapping.objects.create(
                client=invoice.client,
                qbo_customer_id=qbo.add_customer(invoice.client.name),
                qbo_display_name=invoice.client.name,
            )
        dev = Category.objects.get(key="development")
        ItemMapping.objects.create(
            category=dev, qbo_item_id=qbo.add_item("Development"), qbo_item_name="Development"
        )
        quickbooks.set_default_item(item_id=qbo.add_item("Adjustments"), item_name="Adjustments")

        harvest_server.populate(harvest, entries=60, days=15, people=3)
        for n in range(3):
            make.person(f"Person{n} Example", "Consultant", email=f"person{n}@example.com")
        tracker_clients = [make.client(f"Client {n}") for n in range(5)]
        for n in range(10):
            make.project(tracker_clients[n % 5], code=f"P{n}", name=f"Project {n}")
        tracker = TrackerConnection(
            name="Harvest", kind="harvest", account_id=harvest.account_id, base_url=harvest.url
        )
        sync.set_token(connection=tracker, token=harvest.token)
        tracker.save()

        # Two clusters, started before any work is queued so that both take part. They run
        # with DEBUG off, so on a real signing key (qcluster refuses a public one); this
        # process signs the tasks it queues with the same key.
        signing_key = secrets.token_urlsafe(50)
        monkeypatch.setattr(django_q_conf.Conf, "SECRET_KEY", signing_key)
        shim = tmp_path / "cluster_settings.py"
        shim.write_text(CLUSTER_SETTINGS.format(qbo_url=qbo.base_url))
        env = dict(
            os.environ,
            PYTHONPATH=f"{tmp_path}{os.pathsep}{BASE_DIR}",
            DJANGO_SETTINGS_MODULE="cluster_settings",
            DATABASE_URL=_psql_url(settings.DATABASES["default"]["NAME"]),
            SECRET_KEY=signing_key,  # tasks are signed with it
            BILLABLES_ENCRYPTION_KEYS=key,
            DEBUG="false",
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
            Q_WORKERS="2",
            Q_SYNC="false",
            ANTHROPIC_API_KEY="test-key",
            ANTHROPIC_BASE_URL=claude.base_url,
            ANTHROPIC_MAX_RETRIES="0",
            ANTHROPIC_TIMEOUT="10",
            QBO_CLIENT_ID=qbo.client_id,
            QBO_CLIENT_SECRET=qbo.client_secret,
            OAUTHLIB_INSECURE_TRANSPORT="1",
        )
        processes = [_start_cluster(env, p) for p in logs_]

        def ready(path: Path) -> bool:
            return "ready for work" in path.read_text()

        _wait_for(
            lambda: all(ready(p) for p in logs_), timeout=15, what="both clusters", logs_=logs_
        )

        # Every job twice.
        northwind = Client.objects.filter(
            name__in=["Acme Legal LLP", "Globex Retail", "Initech", "Umbrella Health"]
        )
        for copy in (1, 2):
            for client in northwind:
                async_task(
                    "invoices.tasks.classify_with_model",
                    client_id=client.pk,
                    trigger="command",
                    task_name=f"model tier {client.pk} copy {copy}",
                )
            async_task(
                "timesheets.tasks.sync_connection_task",
                tracker.pk,
                "command",
                task_name=f"sync copy {copy}",
            )
        pushes = [quickbooks.request_push(invoice=invoice, user=None) for invoice in invoices]
        for push in pushes:
            quickbooks.enqueue_push(push_id=push.pk)

        # Wait until the queue is empty and no task is running for a moment: syncs queue
        # more work (classification of what they stored), so one empty look is not enough.
        def idle() -> bool:
            if OrmQ.objects.exists():
                return False
            time.sleep(1.0)
            return not OrmQ.objects.exists()

        _wait_for(idle, timeout=30, what="the queue to drain", logs_=logs_)
    finally:
        for process in processes:
            _stop(process)
        for server in (claude_server, qbo_server, harvest_srv):
            server.shutdown()
            server.server_close()

    # Each queued task ran in exactly one process of one cluster, and every one succeeded.
    started = {
        p.stem: [r["task_id"] for r in _json_lines(p) if r.get("message") == "task started"]
        for p in logs_
    }
    a, b = started["cluster-a"], started["cluster-b"]
    assert a and b, "both clusters took work"
    assert len(set(a)) == len(a) and len(set(b)) == len(b)
    assert not set(a) & set(b)
    tasks = Task.objects.all()
    assert set(a) | set(b) == set(tasks.values_list("id", flat=True))
    failures = list(tasks.filter(success=False).values_list("func", "result"))
    assert failures == []
    assert set(tasks.values_list("attempt_count", flat=True)) == {1}

    # Synced once: the duplicate run was skipped (or found nothing new); every tracker entry
    # is stored exactly once.
    runs = list(SyncRun.objects.filter(connection=tracker).values_list("status", "created"))
    assert {status for status, _ in runs} <= {"succeeded", "skipped"}
    assert sum(created for _, created in runs) == len(harvest.entries) == 60
    assert TimeEntry.objects.filter(connection=tracker).count() == 60

    # Classified once: no entry was in two model requests, and the fake saw every request.
    asked = Classification.objects.filter(model_request__isnull=False).count()
    assert asked > 0
    assert sum(ModelRequest.objects.values_list("entries", flat=True)) == asked
    assert ModelRequest.objects.count() == len(claude.message_bodies())

    # Pushed once: one QuickBooks invoice per approved invoice, one create request each.
    assert [p.status for p in InvoicePush.objects.all()] == ["pushed"] * len(invoices)
    assert len(qbo.invoices) == len(invoices)
    creates = [r for r in qbo.requests if r.method == "POST" and r.path.endswith("/invoice")]
    assert len(creates) == len(invoices)


@pytest.mark.django_db
def test_the_release_step_can_run_again_and_sets_up_the_schedules(settings):
    from django_q.models import Schedule

    # Tests run with DEBUG off; release refuses the public development key (billables.E004).
    settings.SECRET_KEY = "release-test-" + "k3y" * 20
    for _ in range(2):
        out = StringIO()
        call_command("release", "--no-collectstatic", verbosity=0, stdout=out)
        assert out.getvalue().endswith("release done\n")
    names = set(Schedule.objects.values_list("name", flat=True))
    assert {"quickbooks-status", "quickbooks-resume-stalled-pushes"} <= names
    assert Schedule.objects.count() == len(names)  # nothing created twice
    with connection.cursor() as cursor:  # the release lock was given back
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0
