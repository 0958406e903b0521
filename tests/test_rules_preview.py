"""What saving a whole rules file would change, before saving it (issue 16, row 24):
`manage.py import_rules FILE --dry-run` and the admin's rules-file upload preview list each
open draft whose total would change (old -> new) and each entry whose category would change.
They run the real import, re-classification and redrafting in a transaction that is rolled
back (`invoices.rule_preview.preview_rules_file`), so the figures are those saving gives and
the database is left exactly as it was. Northwind's demo month on the real PostgreSQL."""

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from invoices.drafting import Period, draft_invoices
from invoices.models import Classification, ClassificationRule, Invoice, InvoiceEvent, Rate
from invoices.rule_preview import preview_rules_file
from invoices.rulesfile import RulesFileInvalid, import_rules

pytestmark = pytest.mark.django_db
DATA = settings.BASE_DIR / "data" / "northwind"
OCTOBER = Period.month("2026-10")
RULES = (DATA / "rules.yaml").read_text()
# Development work is a rule now, and Acme's partner rate goes up by 10.00.
DEVELOPMENT_RULE = """- priority: 30
  notes_regex: (?i)\\b(kick-?off|discovery|stakeholder interview)\\b
  category: discovery
"""
CHANGED = RULES.replace(
    DEVELOPMENT_RULE,
    DEVELOPMENT_RULE + "- priority: 40\n  task: Development\n  category: development\n",
).replace("  - role: Partner\n    rate: '300.00'", "  - role: Partner\n    rate: '310.00'")


@pytest.fixture
def demo():
    call_command("import_rules", str(DATA / "rules.yaml"), verbosity=0)
    call_command(
        "import_entries",
        *(
            str(DATA / name)
            for name in (
                "harvest_detailed_time_2026-10.csv",
                "clockify_detailed_report_2026-10.csv",
                "toggl_detailed_2026-10.csv",
            )
        ),
        verbosity=0,
    )
    draft_invoices(period=OCTOBER)


def database_state() -> dict:
    """What a dry run must leave as it found it."""
    return {
        "rules": sorted(ClassificationRule.objects.values_list("id", "task", "notes_regex")),
        "rates": sorted(Rate.objects.values_list("id", "rate")),
        "invoices": sorted(
            Invoice.objects.values_list("id", "status", "total", "drafted_at", "flags")
        ),
        "classifications": sorted(
            Classification.objects.values_list(
                "entry_id", "category_id", "needs_review", "tier", "billing_code"
            )
        ),
        "events": InvoiceEvent.objects.count(),
    }


def test_the_file_is_what_the_change_is_about():
    assert CHANGED != RULES and CHANGED.count("task: Development") == 1 and "310.00" in CHANGED


def test_dry_run_changes_nothing_and_reports_the_changed_totals_and_categories(demo, tmp_path):
    before = database_state()
    totals = dict(Invoice.objects.values_list("client__name", "total"))
    path = tmp_path / "rules.yaml"
    path.write_text(CHANGED)
    out = StringIO()
    call_command("import_rules", str(path), "--dry-run", stdout=out)
    report = out.getvalue()

    assert database_state() == before
    assert "classification rules: 1 created" in report and "rates: 0 created, 1 updated" in report
    assert "open invoices whose total would change (4 of 4 drafts):" in report
    for client, total in totals.items():
        line = next(line for line in report.splitlines() if f" {client} 2026-10-01" in line)
        assert f": {total} -> " in line
    assert "entries whose category would change:" in report
    assert "'more pipeline stuff': (none) -> Development" in report


def test_the_preview_is_exactly_what_saving_and_redrafting_give(demo):
    preview = preview_rules_file(text=CHANGED)
    promised = {c.client: (c.new, c.pending_new) for c in preview.invoices}
    changed_entries = preview.entries_changed
    assert len(promised) == 4 and changed_entries > 50

    categories = dict(Classification.objects.values_list("entry_id", "category__name"))
    import_rules(CHANGED)
    draft_invoices(period=OCTOBER)
    for invoice in Invoice.objects.select_related("client"):
        pending = invoice.entry_links.filter(state="pending").count()
        assert promised[invoice.client.name] == (invoice.total, pending)
    after = dict(Classification.objects.values_list("entry_id", "category__name"))
    assert sum(categories.get(pk) != name for pk, name in after.items()) == changed_entries
    listed = {c.entry_id: c.new for c in preview.entries}
    assert all(after[pk] == name for pk, name in listed.items())


def test_an_unchanged_file_changes_no_total_and_no_category(demo):
    preview = preview_rules_file(text=RULES)
    assert preview.invoices == [] and preview.entries_changed == 0
    assert "no open invoice's total would change (4 drafts)" in preview.lines()


def test_an_invalid_file_is_refused_with_its_errors_and_changes_nothing(demo, tmp_path):
    before = database_state()
    with pytest.raises(RulesFileInvalid):
        preview_rules_file(text=CHANGED.replace("category: development\n", "category: nope\n"))
    path = tmp_path / "bad.yaml"
    path.write_text("categories: 3\n")
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("import_rules", str(path), "--dry-run", stdout=StringIO(), stderr=StringIO())
    assert database_state() == before


# --- The admin's rules-file upload: preview, then save ----------------------------------------


@pytest.fixture
def superuser():
    return User.objects.create_superuser("sam", "sam@example.com", "a-long-test-password")


def upload_url():
    return reverse("admin:invoices_firm_rules_file")


def test_the_upload_previews_before_saving_and_changes_nothing(client, demo, superuser):
    client.force_login(superuser)
    assert client.get(upload_url()).status_code == 200
    before = database_state()
    response = client.post(
        upload_url(),
        {"file": SimpleUploadedFile("rules.yaml", CHANGED.encode()), "_preview": "1"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and database_state() == before
    assert 'id="total-changes"' in html and 'id="category-changes"' in html
    acme = Invoice.objects.get(client__name="Acme Legal LLP")
    assert f"{acme.total} &rarr;" in html
    assert 'name="text"' in html  # the file travels with the Save button

    response = client.post(upload_url(), {"text": CHANGED, "_save": "1"}, follow=True)
    html = response.content.decode()
    assert "Rules file saved" in html and "4 drafts stale: rebuild before approving" in html
    assert ClassificationRule.objects.filter(task="Development").exists()


def test_the_upload_names_the_files_errors(client, demo, superuser):
    client.force_login(superuser)
    response = client.post(
        upload_url(),
        {"file": SimpleUploadedFile("rules.yaml", b"categories: 3\n"), "_preview": "1"},
    )
    html = response.content.decode()
    assert "nothing was changed" in html and "categories" in html


def test_the_upload_needs_the_permission_to_change_the_firm(client, demo):
    ops = User.objects.create_user("olga", password="a-long-test-password", is_staff=True)
    client.force_login(ops)
    assert client.get(upload_url()).status_code == 403
