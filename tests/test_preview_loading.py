"""A rule preview prices what drafting prices (issue 16, "one loading path"): both load a
client's month through `invoices.drafting_inputs.load_inputs`, so a preview's "now" total is
the draft's total, write-downs, manual lines and late time included. Before they shared it,
the preview copied drafting's loading and skipped all three: on this month it showed 300.00
where the draft said 230.00."""

import datetime as dt
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User

from invoices.adjustments import add_manual_line, adjust_entry
from invoices.approval import approve_invoice
from invoices.drafting import Period, draft_invoices
from invoices.models import ClassificationRule
from invoices.rule_preview import preview_rule
from tests import billing_fixtures as make

SEPTEMBER, OCTOBER = Period.month("2026-09"), Period.month("2026-10")
pytestmark = pytest.mark.django_db


@pytest.fixture
def month():
    make.firm()
    dev = make.category("development")
    make.category("research")
    acme = make.client("Acme")
    project = make.project(acme, "ACME")
    ana = make.person("Ana Pereira", "Partner")
    make.rate("100.00", role="Partner")
    make.rule(dev, task="Dev")
    user = User.objects.create_user("rita", first_name="Rita", is_staff=True)
    approver = User.objects.create_superuser("approver")
    return {
        "client": acme,
        "project": project,
        "ana": ana,
        "dev": dev,
        "user": user,
        "approver": approver,
    }


def test_s10_a_rule_preview_starts_from_the_draft_total_with_adjustments_and_late_time(month):
    september = make.entry(month["project"], month["ana"], day=dt.date(2026, 9, 30), minutes=60)
    approve_invoice(invoice=draft_invoices(period=SEPTEMBER).invoices[0], user=month["approver"])
    make.entry(month["project"], month["ana"], minutes=120, notes="drafted the brief")
    written_down = make.entry(month["project"], month["ana"], minutes=60, notes="research")
    late = make.entry(month["project"], month["ana"], day=dt.date(2026, 9, 29), minutes=30)
    draft_invoices(period=OCTOBER)
    adjust_entry(entry=written_down, user=month["user"], billed_hours=D("0.5"), reason="first time")
    draft = add_manual_line(
        client=month["client"],
        period=OCTOBER,
        user=month["user"],
        kind="credit",
        description="Goodwill credit",
        quantity=D("1"),
        unit_price=D("-70.00"),
        reason="agreed on the call",
    )
    # 2 h + 0.5 h (written down from 1 h) + 0.5 h late from September, less the 70.00 credit.
    assert draft.total == D("230.00")
    assert september.invoice_links.get().invoice.status == "approved"

    # A rule that changes nothing the draft bills: the preview's "now" is the draft's total.
    rule = ClassificationRule(category=month["dev"], priority=100, notes_regex="^nothing$")
    (total,) = preview_rule(rule=rule, period=OCTOBER).totals
    assert (total.before, total.after) == (D("230.00"), D("230.00"))
    assert late.invoice_links.get().late_from == dt.date(2026, 9, 1)
