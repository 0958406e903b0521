"""A management command's stdout is its data (`export_invoices > period.json`); its logs go to
stderr. Checked in a real process (the LOGGING setting as deployed, JSON lines), running
`manage.py sync` against the local Harvest fake: the run logs, and stdout holds only the
command's own report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from tests.fakes.harvest_server import harvest_server  # noqa: F401 - fixture
from timesheets import sync
from timesheets.models import TrackerConnection

ROOT = Path(__file__).resolve().parent.parent
KEY = Fernet.generate_key().decode()


@pytest.mark.django_db(transaction=True)  # committed, so the command's process sees the rows
def test_sync_command_logs_to_stderr_and_keeps_stdout_for_its_report(
    harvest_server,  # noqa: F811
    settings,
):
    settings.BILLABLES_ENCRYPTION_KEYS = [KEY]
    conn = TrackerConnection(
        name="Logged",
        kind="harvest",
        account_id=harvest_server.account_id,
        base_url=harvest_server.url,
    )
    sync.set_token(connection=conn, token=harvest_server.token)
    conn.save()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "BILLABLES_ENCRYPTION_KEYS": KEY,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DEBUG": "false",
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "sync", "--connection", str(conn.pk)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Logged: succeeded; 1 pages, 0 fetched, 0 created, 0 updated, 0 deleted, 0 unchanged"
    ]
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(record["message"].startswith("sync of Logged: ") for record in logged)
