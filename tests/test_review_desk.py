"""The review desk (issue 6): roles, resolving in place, rule preview, the audit trail,
segregation of duties, two-factor and throttled logins, the month overview, the printable
invoice, and changelists that stay at a fixed number of queries. Django's test client on the
real PostgreSQL database; the browser tests are in test_browser.py."""

import datetime as dt
import importlib
import io
from decimal import Decimal as D

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from invoices.approval import InvalidTransition, approve_invoice, last_corrector, void_invoice
from invoices.classification import classify_entries, entries_to_classify
from invoices.drafting import Period, draft_invoices
from invoices.models import (
    Classification,
    ClassificationHistory,
    ClassificationRule,
    ClassificationRuleHistory,
    Firm,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceHistory,
    InvoiceStatus,
    TimeEntryHistory,
)
from invoices.review import correct_entry
from tests import billing_fixtures as make
from timesheets.models import Client, Person, Project, TimeEntry

pytestmark = pytest.mark.django_db
OCTOBER = Period.month("2026-10")
ROLES = importlib.import_module("invoices.migrations.0004_review_desk_roles")
PASSWORD = "a-long-test-password"


@pytest.fixture
def roles():
    """The groups the roles migration made. A transactional test elsewhere in the run empties
    every table (groups included), so they are made again here by the migration's own code."""
    if Group.objects.filter(name__in=ROLES.ROLES).count() != len(ROLES.ROLES):
        ROLES.create_roles(django_apps, None)
    return {name: Group.objects.get(name=name) for name in ROLES.ROLES}


def member(username, group, **extra):
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True, **extra)
    user.groups.add(group)
    return User.objects.get(pk=user.pk)  # fresh: no permission cache


@pytest.fixture
def ops(roles):
    return member("olga", roles[ROLES.OPS_STAFF])


@pytest.fixture
def approver(roles):
    return member("arne", roles[ROLES.APPROVERS])


@pytest.fixture
def month():
    """Acme, October: a 90-minute entry the rules price at 200/h (300.00) and one vague note
    no tier decides (pending)."""
    make.firm()
    dev = make.category("development", code="L250")
    acme = make.client("Acme")
    project = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    rule = make.rule(dev, task="Dev")
    motion = make.entry(project, ana, minutes=90, notes="Drafted the motion")
    vague = make.entry(project, ana, minutes=30, notes="misc", task="Other")
    invoice = draft_invoices(period=OCTOBER).invoices[0]
    return {
        "invoice": invoice,
        "vague": vague,
        "motion": motion,
        "dev": dev,
        "rule": rule,
        "client": acme,
        "project": project,
        "ana": ana,
    }


def change_url(invoice):
    return reverse("admin:invoices_invoice_change", args=[invoice.pk])


def resolve(client, invoice, entry, **data):
    url = reverse("admin:invoices_invoice_resolve", args=[invoice.pk, entry.pk])
    return client.post(url, data, follow=True)


def html_of(response):
    return response.content.decode()


# --- Roles ----------------------------------------------------------------------------------


def codenames(group):
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def test_roles_migration_makes_two_groups_with_least_privilege(roles):
    ops, approvers = codenames(roles[ROLES.OPS_STAFF]), codenames(roles[ROLES.APPROVERS])
    assert approvers - ops == {
        "invoices.approve_invoice",
        "invoices.void_invoice",
        "invoices.add_invoicepush",
    }
    assert ops < approvers
    # Import, review, resolve, edit rules.
    assert {
        "timesheets.add_importbatch",
        "invoices.view_invoice",
        "invoices.change_invoice",
        "invoices.change_classification",
        "invoices.add_classificationrule",
        "invoices.change_rate",
        "invoices.delete_cap",
        "invoices.view_auditrecord",
    } <= ops
    # Nobody in either group may change the firm's settings (who may approve) or delete
    # invoices and entries.
    for perms in (ops, approvers):
        assert not {"invoices.change_firm", "invoices.delete_invoice"} & perms
        assert not {"timesheets.change_timeentry", "timesheets.delete_timeentry"} & perms


def test_roles_migration_can_run_again_without_duplicates(roles):
    before = {name: codenames(group) for name, group in roles.items()}
    ROLES.create_roles(django_apps, None)
    assert Group.objects.filter(name__in=ROLES.ROLES).count() == 2
    assert {name: codenames(Group.objects.get(name=name)) for name in ROLES.ROLES} == before


def test_ops_staff_cannot_approve_or_void(client, month, ops):
    invoice = month["invoice"]
    client.force_login(ops)
    html = html_of(client.get(change_url(invoice)))
    assert 'value="Approve"' not in html and 'value="Void"' not in html
    assert 'value="Resolve"' in html and 'value="Rebuild"' in html
    response = client.post(
        reverse("admin:invoices_invoice_approve", args=[invoice.pk]), follow=True
    )
    assert "invoices.approve_invoice" in html_of(response)
    client.post(reverse("admin:invoices_invoice_void", args=[invoice.pk]), {"reason": "x"})
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.DRAFT
    assert not InvoiceEvent.objects.filter(invoice=invoice, action__in=["approved", "void"])


def test_actions_refuse_get_requests(client, month, approver):
    client.force_login(approver)
    for name in ("approve", "void", "rebuild"):
        url = reverse(f"admin:invoices_invoice_{name}", args=[month["invoice"].pk])
        assert client.get(url).status_code == 403
    url = reverse("admin:invoices_invoice_resolve", args=[month["invoice"].pk, month["vague"].pk])
    assert client.get(url).status_code == 403
    assert Invoice.objects.get().status == InvoiceStatus.DRAFT


# --- Resolving in place ---------------------------------------------------------------------


def test_resolve_in_place_stores_the_decision_and_rebuilds(client, month, ops):
    invoice, vague = month["invoice"], month["vague"]
    client.force_login(ops)
    response = resolve(
        client,
        invoice,
        vague,
        category=month["dev"].pk,
        billable="",
        description="Research for the motion",
        description_shown="misc",
    )
    html = html_of(response)
    assert "300.00 -&gt; 400.00 USD" in html
    assert 'id="invoice-total">400.00<' in html and 'id="pending-count">0<' in html
    invoice.refresh_from_db()
    assert (invoice.total, invoice.flags) == (D("400.00"), [])
    c = Classification.objects.get(entry=vague)
    assert (c.tier, c.category, c.description, c.needs_review) == (
        "manual",
        month["dev"],
        "Research for the motion",
        False,
    )
    assert (c.manual_by, c.manual_description) == (ops, "Research for the motion")
    event = InvoiceEvent.objects.get(invoice=invoice, action="corrected")
    assert event.actor == ops and event.detail["after"]["category"] == month["dev"].pk


def test_resolve_keeps_the_wording_when_it_was_not_edited(client, month, ops):
    client.force_login(ops)
    resolve(
        client,
        month["invoice"],
        month["vague"],
        category=month["dev"].pk,
        description="misc",
        description_shown="misc",
    )
    c = Classification.objects.get(entry=month["vague"])
    assert (c.manual_description, c.description) == ("", "misc")


def test_resolve_as_not_billable_takes_the_entry_off_the_pending_list(client, month, ops):
    client.force_login(ops)
    resolve(client, month["invoice"], month["vague"], billable="false", description_shown="misc")
    invoice = Invoice.objects.get()
    assert (invoice.total, invoice.flags) == (D("300.00"), [])
    assert Classification.objects.get(entry=month["vague"]).billable is False


def test_resolve_without_a_decision_changes_nothing(client, month, ops):
    client.force_login(ops)
    response = resolve(client, month["invoice"], month["vague"], description="x")
    assert "choose a category, or mark the entry not billable" in html_of(response)
    c = Classification.objects.get(entry=month["vague"])
    assert (c.manual_category, c.manual_billable, c.manual_description) == (None, None, "")
    assert Invoice.objects.get().total == D("300.00")


def test_resolve_needs_the_classification_permission(client, month, roles):
    viewer = User.objects.create_user("vic", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(viewer)
    url = reverse("admin:invoices_invoice_resolve", args=[month["invoice"].pk, month["vague"].pk])
    assert client.post(url, {"category": month["dev"].pk}).status_code == 403
    assert Classification.objects.get(entry=month["vague"]).manual_category is None


def test_a_correction_becomes_memory_for_identical_notes_once_approved(month, approver):
    """Spec 2.3: the reviewer's category for "misc" decides next month's "Misc." of the same
    client, once the invoice holding the correction is approved."""
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    approve_invoice(invoice=Invoice.objects.get(), user=approver)
    later = make.entry(
        month["project"], month["ana"], day=dt.date(2026, 11, 3), notes="Misc.", task="Other"
    )
    other_client = make.client("Other")
    stranger = make.entry(
        make.project(other_client, "OTH"),
        month["ana"],
        day=dt.date(2026, 11, 3),
        notes="misc",
        task="Other",
    )
    draft_invoices(period=Period.month("2026-11"))
    assert Classification.objects.get(entry=later).tier == "memory"
    assert Classification.objects.get(entry=later).category == month["dev"]
    assert Classification.objects.get(entry=stranger).needs_review  # another client's memory


# --- Frozen once approved -------------------------------------------------------------------


@pytest.fixture
def approved(month, approver):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    return approve_invoice(invoice=Invoice.objects.get(), user=approver)


def test_an_approved_invoice_cannot_be_edited_by_anyone(client, month, approved):
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(root)
    page = client.get(change_url(approved))
    html = html_of(page)
    assert "View invoice" in html and "read-only" in html
    for label in ("Approve", "Rebuild", "Resolve", "Save"):
        assert f'value="{label}"' not in html
    assert client.post(change_url(approved), {}).status_code == 403
    response = resolve(client, approved, month["motion"], billable="false")
    assert "approved; its entries cannot be changed" in html_of(response)
    response = client.post(
        reverse("admin:invoices_invoice_rebuild", args=[approved.pk]), follow=True
    )
    assert "only drafts are rebuilt" in html_of(response)
    entry_page = reverse("admin:invoices_classification_change", args=[month["motion"].pk])
    assert client.post(entry_page, {"manual_billable": "false"}).status_code == 403
    approved.refresh_from_db()
    assert (approved.status, approved.total) == (InvoiceStatus.APPROVED, D("400.00"))
    assert Classification.objects.get(entry=month["motion"]).manual_billable is None


def test_an_approver_approves_and_sees_the_invoice_read_only(client, month, approver):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    client.force_login(approver)
    invoice = Invoice.objects.get()
    response = client.post(
        reverse("admin:invoices_invoice_approve", args=[invoice.pk]), follow=True
    )
    html = html_of(response)
    invoice.refresh_from_db()
    assert f"{invoice.number} approved." in html and "read-only" in html
    assert 'value="Approve"' not in html and 'value="Void"' in html
    invoice.refresh_from_db()
    assert (invoice.status, invoice.approved_by) == (InvoiceStatus.APPROVED, approver)


def test_approve_is_refused_when_the_draft_was_rebuilt_after_the_page_was_opened(
    client, month, approver
):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    client.force_login(approver)
    invoice = Invoice.objects.get()
    page = client.get(change_url(invoice))
    seen = page.context["review_version"]
    assert f'name="seen" value="{seen}"' in html_of(page)
    make.entry(month["project"], month["ana"], minutes=60)  # a late entry, then a rebuild
    draft_invoices(period=OCTOBER)
    approve = reverse("admin:invoices_invoice_approve", args=[invoice.pk])
    response = client.post(approve, {"seen": seen}, follow=True)
    assert "was rebuilt after you opened it (total now 600.00 USD)" in html_of(response)
    assert Invoice.objects.get().status == InvoiceStatus.DRAFT
    fresh = client.get(change_url(invoice)).context["review_version"]
    client.post(approve, {"seen": fresh})
    assert Invoice.objects.get().status == InvoiceStatus.APPROVED


# --- Segregation of duties and two-factor ---------------------------------------------------


def test_the_approver_may_not_be_the_last_corrector_when_the_firm_says_so(
    client, month, approver, roles
):
    Firm.objects.filter(pk=1).update(approver_must_differ_from_corrector=True)
    other = member("bea", roles[ROLES.APPROVERS])
    invoice = month["invoice"]
    client.force_login(approver)
    resolve(client, invoice, month["vague"], category=month["dev"].pk, description_shown="misc")
    assert last_corrector(invoice=invoice) == approver
    response = client.post(
        reverse("admin:invoices_invoice_approve", args=[invoice.pk]), follow=True
    )
    assert "ou made the last correction on" in html_of(response)  # the admin capitalizes
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.DRAFT
    with pytest.raises(InvalidTransition, match="the firm requires another approver"):
        approve_invoice(invoice=invoice, user=approver)
    approve_invoice(invoice=invoice, user=other)
    assert Invoice.objects.get().approved_by == other


def test_the_approver_may_be_the_corrector_when_the_firm_allows_it(month, approver):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    assert approve_invoice(invoice=Invoice.objects.get(), user=approver).status == "approved"


def totp_token(device):
    return TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()


def login(client, username, password=PASSWORD, **extra):
    return client.post(
        reverse("admin:login") + "?next=/admin/",
        {"username": username, "password": password, **extra},
    )


def test_approvers_need_a_two_factor_login_when_the_firm_requires_it(client, month, approver):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    Firm.objects.filter(pk=1).update(approvers_need_two_factor=True)
    invoice = Invoice.objects.get()
    approve = reverse("admin:invoices_invoice_approve", args=[invoice.pk])

    assert login(client, "arne").status_code == 302  # no device yet: password only
    response = client.post(approve, follow=True)
    assert "he firm requires a two-factor login" in html_of(response)
    assert Invoice.objects.get().status == InvoiceStatus.DRAFT
    with pytest.raises(InvalidTransition, match="two-factor"):
        void_invoice(invoice=invoice, user=approver)  # a user from outside a request: refused

    device = TOTPDevice.objects.create(user=approver, name="phone", confirmed=True)
    client.logout()
    refused = login(client, "arne")  # a user with a device must give its code
    assert refused.status_code == 200 and "Please enter your OTP token" in html_of(refused)
    wrong = login(client, "arne", otp_token="000000" if totp_token(device) != "000000" else "1")
    assert wrong.status_code == 200 and "Invalid token" in html_of(wrong)
    TOTPDevice.objects.get(pk=device.pk).throttle_reset()  # django-otp slows retries down
    assert login(client, "arne", otp_token=totp_token(device)).status_code == 302
    client.post(approve)
    assert Invoice.objects.get().status == InvoiceStatus.APPROVED


def test_failed_logins_are_throttled(client, ops, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert login(client, "olga", password="wrong").status_code == 200
    assert login(client, "olga", password="wrong").status_code == 429  # locked out
    locked = login(client, "olga")  # the right password, too late
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_successful_login_resets_the_failure_count(client, ops, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "olga", password="wrong")
    assert login(client, "olga").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "olga", password="wrong")
    assert login(client, "olga").status_code == 302


# --- Rule editing and preview ---------------------------------------------------------------


def rule_form(month, **changes):
    data = {
        "client": "",
        "priority": "100",
        "task": "",
        "notes_regex": "",
        "project": "",
        "category": month["dev"].pk,
        "preview_month": "2026-10",
    }
    return {**data, **changes}


def database_state():
    return {
        "rules": list(ClassificationRule.objects.values_list("id", "task", "notes_regex")),
        "classifications": list(
            Classification.objects.order_by("entry_id").values_list(
                "entry_id", "category_id", "tier", "needs_review", "classified_at"
            )
        ),
        "invoices": list(Invoice.objects.values_list("id", "total", "flags", "drafted_at")),
        "events": InvoiceEvent.objects.count(),
        "history": (ClassificationRuleHistory.objects.count(), InvoiceHistory.objects.count()),
    }


def test_preview_of_a_new_rule_shows_matches_and_totals_and_saves_nothing(client, month, ops):
    client.force_login(ops)
    before = database_state()
    response = client.post(
        reverse("admin:invoices_classificationrule_add"),
        rule_form(month, notes_regex="(?i)^misc$", _preview="Preview"),
    )
    assert response.status_code == 200
    html = html_of(response)
    assert "Preview for October 2026: nothing has been saved" in html
    assert "matches <strong>1</strong> entry" in html
    assert "would decide <strong>1</strong>" in html
    assert "change the decision of <strong>1</strong>" in html
    assert "300.00 USD" in html and "400.00 USD" in html and "+100.00" in html
    assert "1 &rarr; 0" in html  # pending entries, now -> with the rule
    assert 'name="notes_regex" value="(?i)^misc$"' in html  # the form keeps what was typed
    assert database_state() == before


def test_preview_of_an_edited_rule_leaves_the_saved_rule_alone(client, month, ops):
    client.force_login(ops)
    before = database_state()
    url = reverse("admin:invoices_classificationrule_change", args=[month["rule"].pk])
    response = client.post(url, rule_form(month, task="Other", _preview="Preview"))
    html = html_of(response)
    # The edited rule now matches the vague entry instead of the motion: 300.00 -> 100.00.
    assert "matches <strong>1</strong> entry" in html
    assert "300.00 USD" in html and "100.00 USD" in html and "-200.00" in html
    assert database_state() == before
    assert ClassificationRule.objects.get(pk=month["rule"].pk).task == "Dev"


def test_preview_ignores_entries_on_approved_invoices(client, month, approved, ops):
    client.force_login(ops)
    response = client.post(
        reverse("admin:invoices_classificationrule_add"),
        rule_form(month, task="Dev", notes_regex="motion", _preview="Preview"),
    )
    html = html_of(response)
    assert "1 matched" in html and "unchanged (approved invoice)" in html


def test_rule_validation_names_the_problem(client, month, ops):
    client.force_login(ops)
    url = reverse("admin:invoices_classificationrule_add")
    bad_regex = client.post(url, rule_form(month, notes_regex="(unclosed"))
    assert "(unclosed&#x27; refused: missing )" in html_of(bad_regex)
    no_matcher = client.post(url, rule_form(month, _preview="Preview"))
    assert "a rule needs at least one of: task, notes regex, project" in html_of(no_matcher)
    bad_month = client.post(url, rule_form(month, task="Dev", preview_month="2026-13"))
    assert "not a month" in html_of(bad_month)
    assert ClassificationRule.objects.count() == 1


def test_overlapping_rates_are_refused_with_the_conflicting_row_named(client, month, ops):
    client.force_login(ops)
    existing = month["client"].rates.create(rate=D("250.00"), valid_from=dt.date(2026, 1, 1))
    response = client.post(
        reverse("admin:invoices_rate_add"),
        {
            "client": month["client"].pk,
            "role": "",
            "rate": "260.00",
            "valid_from": "2026-06-01",
            "valid_to": "",
        },
    )
    assert f"overlaps rate #{existing.pk}" in html_of(response)
    assert month["client"].rates.count() == 1


# --- Audit trail (database triggers) --------------------------------------------------------


def test_approval_and_void_are_in_the_audit_trail_with_who_and_before_after(
    client, month, approver
):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    invoice = Invoice.objects.get()
    client.force_login(approver)
    client.post(reverse("admin:invoices_invoice_approve", args=[invoice.pk]))
    client.post(reverse("admin:invoices_invoice_void", args=[invoice.pk]), {"reason": "dup"})
    statuses = list(
        InvoiceHistory.objects.filter(pgh_obj=invoice, pgh_label="update")
        .order_by("pgh_id")
        .values_list("status", flat=True)
    )
    assert statuses[-2:] == ["approved", "void"]
    approval = InvoiceHistory.objects.filter(pgh_obj=invoice, status="approved").get()
    assert approval.pgh_context.metadata["user"] == approver.pk
    assert approval.pgh_context.metadata["url"].endswith(f"/{invoice.pk}/approve/")
    # Approving locked the entries with one bulk UPDATE; the trigger saw every row.
    locked = TimeEntryHistory.objects.filter(pgh_label="update", locked=True)
    assert set(locked.values_list("pgh_obj_id", flat=True)) == {
        month["motion"].pk,
        month["vague"].pk,
    }

    page = html_of(client.get(reverse("admin:invoices_auditrecord_changelist")))
    assert "status: draft -&gt; approved" in page
    assert "status: approved -&gt; void" in page
    assert "arne" in page


def test_a_manual_correction_is_in_the_audit_trail(client, month, ops):
    client.force_login(ops)
    resolve(client, month["invoice"], month["vague"], category=month["dev"].pk)
    [event] = ClassificationHistory.objects.filter(pgh_obj=month["vague"].pk)
    assert (event.pgh_label, event.manual_category_id, event.manual_by_id) == (
        "update",
        month["dev"].pk,
        ops.pk,
    )
    assert event.pgh_context.metadata["user"] == ops.pk
    # A classification run rewrites every decision in bulk: no history rows for that.
    draft_invoices(period=OCTOBER)
    assert ClassificationHistory.objects.count() == 1


def test_rule_changes_are_in_the_audit_trail_including_bulk_updates(client, month, ops):
    client.force_login(ops)
    response = client.post(
        reverse("admin:invoices_classificationrule_add"), rule_form(month, notes_regex="misc")
    )
    assert response.status_code == 302
    new_rule = ClassificationRule.objects.get(notes_regex="misc")
    insert = ClassificationRuleHistory.objects.get(pgh_obj=new_rule, pgh_label="insert")
    assert insert.pgh_context.metadata["user"] == ops.pk
    # A bulk update (no signals, no save()) does not escape the trail.
    ClassificationRule.objects.update(priority=5)
    updates = ClassificationRuleHistory.objects.filter(pgh_label="update", priority=5)
    assert set(updates.values_list("pgh_obj_id", flat=True)) == {month["rule"].pk, new_rule.pk}
    page = html_of(
        client.get(
            reverse("admin:invoices_auditrecord_changelist")
            + f"?model=invoices.classificationrule&q={new_rule.pk}"
        )
    )
    assert "priority: 100 -&gt; 5" in page and "olga" in page


def test_imports_are_in_the_time_entry_history(client, month, ops):
    before = TimeEntryHistory.objects.filter(pgh_label="insert").count()
    TimeEntry.objects.bulk_create(
        [
            TimeEntry(
                source="csv",
                external_id=f"bulk-{n}",
                person=month["ana"],
                client=month["client"],
                project=month["project"],
                date=dt.date(2026, 10, 9),
                duration_seconds=600,
                content_hash=f"b{n}",
            )
            for n in range(3)
        ]
    )
    assert TimeEntryHistory.objects.filter(pgh_label="insert").count() == before + 3
    client.force_login(ops)
    history = client.get(reverse("admin:invoices_timeentryhistory_changelist") + "?label=insert")
    assert history.status_code == 200
    assert len(history.context["cl"].result_list) == before + 3
    trail = client.get(
        reverse("admin:invoices_auditrecord_changelist") + "?model=invoices.trackedtimeentry"
    )
    assert trail.status_code == 200 and len(trail.context["cl"].result_list) == before + 3


# --- Overview, printable invoice ------------------------------------------------------------


def test_month_overview_per_client_with_totals(client, month, ops):
    make.entry(month["project"], month["ana"], day=dt.date(2026, 9, 30))  # another month
    client.force_login(ops)
    response = client.get(reverse("admin:invoices_invoice_month") + "?month=2026-10")
    assert response.status_code == 200
    overview = response.context["overview"]
    [acme] = overview.clients
    assert (acme.name, acme.entries, acme.pending) == ("Acme", 2, 1)
    assert acme.by_tier == {"rules": 1, "memory": 0, "model": 0, "manual": 0}
    assert overview.totals == {"USD": D("300.00")} and overview.stages == {"draft": 1}
    html = html_of(response)
    assert change_url(month["invoice"]) in html
    assert "Entries pending review" in html
    index = html_of(client.get(reverse("admin:index")))
    assert reverse("admin:invoices_invoice_month") in index


def test_printable_invoice_is_client_facing(client, month, ops):
    client.force_login(ops)
    html = html_of(client.get(reverse("admin:invoices_invoice_print", args=[month["invoice"].pk])))
    assert "DRAFT: not yet approved" in html
    assert "Drafted the motion" in html and "1.50 h" in html and "300.00" in html
    assert "misc" not in html  # pending entries are not on the client's invoice
    assert "Rule" not in html and "rule #" not in html  # nothing internal


def test_printable_invoice_of_an_approved_invoice_has_no_draft_banner(client, approved, ops):
    client.force_login(ops)
    html = html_of(client.get(reverse("admin:invoices_invoice_print", args=[approved.pk])))
    assert "DRAFT" not in html and "Total due (USD)" in html and "400.00" in html


# --- Large months stay fast -----------------------------------------------------------------


def many_invoices(n):
    make.firm()
    clients = Client.objects.bulk_create([Client(name=f"Client {i:03d}") for i in range(n)])
    projects = Project.objects.bulk_create(
        [Project(client=c, code=f"P{i:03d}", name=f"P{i:03d}") for i, c in enumerate(clients)]
    )
    now = timezone.now()
    Invoice.objects.bulk_create(
        [
            Invoice(
                client=c,
                project=p,
                period_start=OCTOBER.start,
                period_end=OCTOBER.end,
                currency="USD",
                issue_date=OCTOBER.end,
                due_date=OCTOBER.end,
                subtotal=D("10.00"),
                total=D("10.00"),
                flags=["pending"],
                drafted_at=now,
            )
            for c, p in zip(clients, projects, strict=True)
        ]
    )
    return clients, projects


def many_entries(n, client, project):
    person = Person.objects.create(email="many@example.com", name="Many", role="Partner")
    entries = TimeEntry.objects.bulk_create(
        [
            TimeEntry(
                source="csv",
                external_id=f"many-{i}",
                person=person,
                client=client,
                project=project,
                date=OCTOBER.start + dt.timedelta(days=i % 28),
                duration_seconds=900,
                notes=f"note {i}",
                content_hash=f"m{i}",
            )
            for i in range(n)
        ]
    )
    Classification.objects.bulk_create(
        [Classification(entry=e, tier="", needs_review=True, review_reason="x") for e in entries]
    )


@pytest.mark.parametrize("rows", [5, 150])
def test_invoice_list_stays_under_15_queries(client, ops, rows, django_assert_max_num_queries):
    many_invoices(rows)
    client.force_login(ops)
    with django_assert_max_num_queries(15):
        response = client.get(reverse("admin:invoices_invoice_changelist"))
    assert response.status_code == 200
    assert html_of(response).count("draft #") >= min(rows, 100)


@pytest.mark.parametrize("rows", [5, 250])
def test_classification_list_stays_under_15_queries(
    client, ops, rows, django_assert_max_num_queries
):
    [acme], [project] = many_invoices(1)
    many_entries(rows, acme, project)
    client.force_login(ops)
    with django_assert_max_num_queries(15):
        response = client.get(reverse("admin:invoices_classification_changelist"))
    assert response.status_code == 200
    assert html_of(response).count("note ") >= min(rows, 100)


@pytest.mark.parametrize("rows", [5, 250])
def test_time_entry_list_stays_under_15_queries(client, ops, rows, django_assert_max_num_queries):
    [acme], [project] = many_invoices(1)
    many_entries(rows, acme, project)
    client.force_login(ops)
    with django_assert_max_num_queries(15):
        response = client.get(reverse("admin:timesheets_timeentry_changelist"))
    assert response.status_code == 200


def queries_of(client, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_review_page_and_overview_query_counts_do_not_grow_with_lines(
    client, approver, django_assert_max_num_queries
):
    make.firm()
    dev = make.category("development")
    counts = []
    for n, name in ((3, "Small"), (60, "Large")):
        c = make.client(name)
        p = make.project(c, name.upper())
        who = make.person(f"{name} Person", "Partner", email=f"{name}@example.com")
        make.rule(dev, client=c, task="Dev")
        for i in range(n):
            make.entry(p, who, day=OCTOBER.start + dt.timedelta(days=i % 28), notes=f"work {i}")
        make.entry(p, who, notes="vague", task="Other")  # one pending entry each
    make.rate("100.00", role="Partner")
    invoices = {inv.client.name: inv for inv in draft_invoices(period=OCTOBER).invoices}
    client.force_login(approver)
    client.get(change_url(invoices["Small"]))  # first request: session and caches warm up
    for name in ("Small", "Large"):
        counts.append(queries_of(client, change_url(invoices[name])))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 40, counts
    overview = reverse("admin:invoices_invoice_month") + "?month=2026-10"
    # 16: the drafts' pending hours and standard value take two (the pending links and the
    # rate table), whatever the number of drafts and entries (issue 16).
    with django_assert_max_num_queries(16):
        assert client.get(overview).status_code == 200


# --- Holds, late time and unbilled time (billing semantics 10.1 and 10.2) -------------------


def release_url(invoice, entry):
    return reverse("admin:invoices_invoice_release", args=[invoice.pk, entry.pk])


@pytest.fixture
def held(month):
    """A 60-minute entry the tracker calls invoiced, held on October's draft (rebuilt)."""
    entry = make.entry(month["project"], month["ana"], minutes=60, notes="Filed the reply")
    TimeEntry.objects.filter(pk=entry.pk).update(tracker_invoiced=True)
    [draft] = draft_invoices(period=OCTOBER).invoices
    return {"entry": entry, "invoice": draft}


@pytest.fixture
def late(month, approver):
    """October approved, then an entry dated 28 October arrives, and November is drafted: the
    late entry goes on November's draft, flagged as late time from 2026-10."""
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    approve_invoice(invoice=Invoice.objects.get(), user=approver)
    entry = make.entry(
        month["project"], month["ana"], minutes=90, day=dt.date(2026, 10, 28), notes="Late call"
    )
    classify_entries(entries_to_classify(entry_ids=[entry.pk]))  # as its import does
    make.entry(month["project"], month["ana"], minutes=30, day=dt.date(2026, 11, 3))
    [november] = draft_invoices(period=Period.month("2026-11")).invoices
    return {"entry": entry, "invoice": november}


def test_held_entries_are_listed_beside_pending_ones_with_their_reason(client, month, held, ops):
    client.force_login(ops)
    page = client.get(change_url(held["invoice"]))
    assert [row["entry"] for row in page.context["review_held"]] == [held["entry"]]
    assert [row["entry"] for row in page.context["review_pending"]] == [month["vague"]]
    html = html_of(page)
    assert 'id="held"' in html and "invoiced in Other CSV" in html and "Filed the reply" in html
    assert f'action="{release_url(held["invoice"], held["entry"])}"' in html
    assert 'value="Release"' in html
    assert "Entries held (invoiced or not approved in the tracker)" in html
    assert 'id="pending-count">1<' in html


def test_held_entries_never_disable_approve(client, month, held, approver):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    client.force_login(approver)
    html = html_of(client.get(change_url(held["invoice"])))
    assert 'value="Approve">' in html and "Resolve pending entries first" not in html


def test_release_bills_the_held_entry_and_says_so(client, month, held, ops):
    client.force_login(ops)
    response = client.post(release_url(held["invoice"], held["entry"]), follow=True)
    html = html_of(response)
    assert "Hold on the entry of 2026-10-05 released" in html
    assert "300.00 -&gt; 500.00 USD" in html
    link = InvoiceEntry.objects.get(entry=held["entry"])
    assert (link.state, link.is_live) == ("billed", True)
    classification = Classification.objects.get(entry=held["entry"])
    assert classification.hold_released_by == ops
    assert Invoice.objects.get(status="draft").total == D("500.00")


def test_release_needs_a_post_and_the_classification_permission(client, month, held, roles):
    viewer = User.objects.create_user("vic", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(viewer)
    url = release_url(held["invoice"], held["entry"])
    assert client.post(url).status_code == 403
    assert 'value="Release"' not in html_of(client.get(change_url(held["invoice"])))
    ops = member("olga", roles[ROLES.OPS_STAFF])
    client.force_login(ops)
    assert client.get(url).status_code == 403
    assert InvoiceEntry.objects.get(entry=held["entry"]).state == "held"
    assert Classification.objects.get(entry=held["entry"]).hold_released_at is None


def test_release_of_an_entry_that_is_not_held_changes_nothing(client, month, held, ops):
    client.force_login(ops)
    response = client.post(release_url(held["invoice"], month["motion"]), follow=True)
    assert "is not held" in html_of(response)
    assert Classification.objects.get(entry=month["motion"]).hold_released_at is None


def test_late_time_is_shown_on_its_line_and_entry_with_its_period(client, month, late, ops):
    client.force_login(ops)
    html = html_of(client.get(change_url(late["invoice"])))
    assert html.count("late time from 2026-10") >= 2  # the line and its entry
    assert "Late time from an approved period" in html


def test_a_stale_draft_shows_its_flag(client, month, ops):
    make.entry(month["project"], month["ana"], minutes=45)  # marks the draft stale
    client.force_login(ops)
    html = html_of(client.get(change_url(month["invoice"])))
    assert "Entries changed since drafted: rebuild" in html and "flag-stale" in html


def test_month_overview_lists_unbilled_time_per_client(client, month, approver, ops):
    correct_entry(entry=month["vague"], user=approver, category=month["dev"])
    approve_invoice(invoice=Invoice.objects.get(), user=approver)
    project, ana = month["project"], month["ana"]
    late = make.entry(project, ana, minutes=90, day=dt.date(2026, 10, 28), notes="Late call")
    waiting = make.entry(project, ana, minutes=30, day=dt.date(2026, 11, 20), notes="Held one")
    TimeEntry.objects.filter(pk=waiting.pk).update(tracker_invoiced=True)
    classify_entries(entries_to_classify(entry_ids=[late.pk, waiting.pk]))  # as imports do
    globex = make.client("Globex")
    globex_project = make.project(globex, "GLX")
    make.entry(globex_project, ana, minutes=60)
    [stale] = draft_invoices(period=OCTOBER, client_ids=[globex.pk]).invoices
    make.entry(globex_project, ana, minutes=15)  # marks Globex's draft stale

    client.force_login(ops)
    response = client.get(reverse("admin:invoices_invoice_month") + "?month=2026-10")
    assert response.status_code == 200
    overview = response.context["overview"]
    [acme] = overview.unbilled
    assert (acme.client, acme.entries, acme.hours) == ("Acme", 2, D("2.0000"))
    assert acme.oldest == dt.date(2026, 10, 28)
    assert acme.by_reason == {"held": 1, "late time": 1}
    assert sum(acme.by_age.values()) == 2
    html = html_of(response)
    assert 'id="unbilled"' in html and "Unbilled time" in html
    entries_url = reverse("admin:timesheets_timeentry_changelist")
    assert f'href="{entries_url}?client__id__exact={month["client"].pk}"' in html
    assert "2026-10-28" in html and "2.0000" in html
    for bucket, count in acme.by_age.items():
        assert f"{bucket}: {count}" in html
    assert "held: 1" in html and "late time: 1" in html
    # Which drafts are stale, whatever their month, each linked to its page.
    assert [invoice.pk for invoice in overview.stale] == [stale.pk]
    assert 'id="stale"' in html and change_url(stale) in html


def test_month_overview_says_when_nothing_is_unbilled(client, month, ops):
    client.force_login(ops)
    html = html_of(client.get(reverse("admin:invoices_invoice_month") + "?month=2026-10"))
    assert "No unbilled time" in html and "No stale drafts" in html


def test_draft_invoices_prints_the_unbilled_time_per_client(month, late):
    held_entry = make.entry(
        month["project"], month["ana"], minutes=30, day=dt.date(2026, 9, 30), notes="Sept"
    )
    TimeEntry.objects.filter(pk=held_entry.pk).update(tracker_invoiced=True)
    out = io.StringIO()
    call_command("draft_invoices", "--period", "2026-11", stdout=out, no_color=True)
    text = out.getvalue()
    today = timezone.localdate()
    september = (today - dt.date(2026, 9, 30)).days
    assert "Unbilled time" in text
    assert "Acme: 1 entry, 0.5000 h, oldest 2026-09-30" in text
    assert (
        f"  2026-09-30  0.5000 h  {september} days  Ana Pereira  held: invoiced in Other CSV"
        f"  (entry {held_entry.pk})"
    ) in text
    assert "\x1b[" not in text  # plain text


def test_draft_invoices_says_when_nothing_is_unbilled(month):
    out = io.StringIO()
    call_command("draft_invoices", "--period", "2026-10", stdout=out, no_color=True)
    assert "Unbilled time: none" in out.getvalue()


def test_time_entries_can_be_filtered_by_the_trackers_billing_state(client, month, ops):
    TimeEntry.objects.filter(pk=month["motion"].pk).update(
        tracker_invoiced=True, tracker_approved=True
    )
    client.force_login(ops)
    url = reverse("admin:timesheets_timeentry_changelist")
    page = client.get(url)
    assert {"tracker_invoiced", "tracker_approved"} <= set(page.context["cl"].list_display)
    titles = {spec.title for spec in page.context["cl"].filter_specs}
    assert {"tracker invoiced", "tracker approved"} <= titles
    invoiced = client.get(url, {"tracker_invoiced__exact": "1"}).context["cl"].result_list
    assert list(invoiced) == [month["motion"]]
    unknown = client.get(url, {"tracker_approved__isnull": "True"}).context["cl"].result_list
    assert list(unknown) == [month["vague"]]
