"""Saving a rule or a client's policy marks every affected draft stale, says so, and offers
"rebuild all" (issue 16): the classification-rule admin re-classifies the entries the rule may
change in its own transaction (so the triggers mark their drafts stale), the policy admin says
how many of the client's drafts its change made stale, and the month overview's "Rebuild all
stale drafts" rebuilds every stale draft of every period. Django's test client on the real
PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from invoices.drafting import Period, draft_invoices
from invoices.models import ClassificationRule, Flag, Invoice, InvoiceEntry
from tests import billing_fixtures as make

pytestmark = pytest.mark.django_db

OCTOBER, SEPTEMBER = Period.month("2026-10"), Period.month("2026-09")


@pytest.fixture
def month():
    """Acme's October draft: a 90-minute entry the task rule prices (300.00) and a vague
    30-minute note no tier decides (pending); Beta's September draft."""
    make.firm()
    dev = make.category("development")
    acme, beta = make.client("Acme"), make.client("Beta")
    project, beta_project = make.project(acme, "ACME"), make.project(beta, "BETA")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("200.00", role="Partner")
    make.rule(dev, task="Dev")
    make.entry(project, ana, minutes=90, notes="Drafted the motion")
    vague = make.entry(project, ana, minutes=30, notes="misc", task="Other")
    make.entry(beta_project, ana, day=dt.date(2026, 9, 10), minutes=60, notes="Drafted a brief")
    [october] = draft_invoices(period=OCTOBER).invoices
    [september] = draft_invoices(period=SEPTEMBER).invoices
    admin = User.objects.create_superuser("root", "root@example.com", "a-long-test-password")
    return {
        "dev": dev,
        "acme": acme,
        "beta": beta,
        "vague": vague,
        "october": october,
        "september": september,
        "admin": admin,
    }


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def followed(client, response):
    """The page a redirect leads to, with the messages it shows."""
    assert response.status_code == 302, response.content[:2000]
    return client.get(response["Location"])


def is_stale(invoice: Invoice) -> bool:
    invoice.refresh_from_db()
    return Flag.STALE in invoice.flags


def rebuild_all_link(message: str) -> bool:
    return bool(
        re.search(
            r'<a href="' + re.escape(reverse("admin:invoices_invoice_month")) + r'#stale-drafts">'
            r"rebuild all</a>",
            message,
        )
    )


def test_saving_a_rule_reclassifies_marks_the_draft_stale_and_offers_rebuild_all(client, month):
    client.force_login(month["admin"])
    assert not is_stale(month["october"])
    response = client.post(
        reverse("admin:invoices_classificationrule_add"),
        {
            "client": month["acme"].pk,
            "priority": "100",
            "task": "Other",
            "notes_regex": "",
            "project": "",
            "category": month["dev"].pk,
            "preview_month": "2026-10",
        },
    )
    page = followed(client, response)
    # The vague entry is decided by the new rule at once, and its draft is stale.
    vague = month["vague"]
    vague.classification.refresh_from_db()
    assert (vague.classification.category, vague.classification.needs_review) == (
        month["dev"],
        False,
    )
    assert is_stale(month["october"])
    assert not is_stale(month["september"])  # Beta's: the rule is Acme's
    [notice] = [m for m in messages_of(page) if "re-checked" in m]
    assert "1 draft stale: rebuild before approving" in notice and rebuild_all_link(notice)
    assert rebuild_all_link(page.content.decode())  # rendered as a link, not escaped


def test_deleting_a_rule_marks_the_drafts_it_priced_stale(client, month):
    client.force_login(month["admin"])
    rule = ClassificationRule.objects.get(task="Dev")  # firm-wide: every client's drafts
    response = client.post(
        reverse("admin:invoices_classificationrule_delete", args=[rule.pk]), {"post": "yes"}
    )
    page = followed(client, response)
    assert is_stale(month["october"]) and is_stale(month["september"])
    [notice] = [m for m in messages_of(page) if "re-checked" in m]
    assert "2 drafts stale" in notice and rebuild_all_link(notice)


def policy_form(client, policy_url) -> dict:
    """The policy's change form as the admin renders it: its fields and the inlines'
    management forms, ready to post back."""
    context = client.get(policy_url).context
    form = context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if hasattr(value, "all"):
            value = [obj.pk for obj in value.all()]
        elif isinstance(value, list):
            value = [getattr(obj, "pk", obj) for obj in value]
        if value is None:
            value = ""
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = value
    for inline in context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management.initial.get(name, "")
    return data


def test_saving_a_policy_says_which_drafts_are_stale_and_offers_rebuild_all(client, month):
    client.force_login(month["admin"])
    policy = month["acme"].policy
    url = reverse("admin:invoices_clientpolicy_change", args=[policy.pk])
    data = policy_form(client, url)
    data["discount_percent"] = "10"
    page = followed(client, client.post(url, data))
    policy.refresh_from_db()
    assert policy.discount_percent == D("10")
    assert is_stale(month["october"]) and not is_stale(month["september"])
    [notice] = [m for m in messages_of(page) if "policy saved" in m]
    assert "Acme's policy saved; 1 draft stale: rebuild before approving" in notice
    assert rebuild_all_link(notice)


def test_the_overview_rebuilds_every_stale_draft_of_every_period(client, month):
    client.force_login(month["admin"])
    october, september = month["october"], month["september"]
    Invoice.objects.filter(pk__in=[october.pk, september.pk]).update(flags=[Flag.STALE])
    overview = reverse("admin:invoices_invoice_month") + "?month=2026-10"
    html = client.get(overview).content.decode()
    assert 'id="rebuild-all"' in html and "Rebuild all 2 stale drafts" in html
    response = client.post(
        reverse("admin:invoices_classification_queue_rebuild"),
        {"month": "all", "next": overview + "#stale-drafts"},
    )
    assert response["Location"] == overview + "#stale-drafts"
    page = client.get(response["Location"])
    assert "2 stale drafts rebuilt." in messages_of(page)
    assert not is_stale(october) and not is_stale(september)
    assert InvoiceEntry.objects.filter(invoice__in=[october, september]).exists()
    assert "No stale drafts." in page.content.decode()


def test_rebuild_all_never_redirects_off_the_site(client, month):
    client.force_login(month["admin"])
    response = client.post(
        reverse("admin:invoices_classification_queue_rebuild"),
        {"month": "all", "next": "https://evil.example/"},
    )
    assert response["Location"].startswith(reverse("admin:invoices_classification_queue"))


def test_a_bulk_decision_in_the_classifications_list_says_which_drafts_are_stale(client, month):
    client.force_login(month["admin"])
    response = client.post(
        reverse("admin:invoices_classification_changelist"),
        {"action": "mark_not_billable", "_selected_action": [month["vague"].pk]},
    )
    page = followed(client, response)
    assert is_stale(month["october"]) and not is_stale(month["september"])
    [notice] = [m for m in messages_of(page) if "decided" in m]
    assert notice.startswith("1 entry decided; 1 draft stale: rebuild before approving")
    assert rebuild_all_link(notice)
