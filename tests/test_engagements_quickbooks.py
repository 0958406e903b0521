"""Section 13's lines in QuickBooks and the JSON export (issue 13): a fixed-fee project's fee
line, its no-charge detail and a retainer's drawdown go to the fake QuickBooks over real HTTP
like manual lines (the drawdown on the default item, negative like a cap), and the export
carries each line's section 13 part."""

import datetime as dt
import json
from decimal import Decimal as D

from invoices.approval import approve_invoice
from invoices.drafting import Period, draft_invoices
from invoices.exporting import export_period
from invoices.models import FixedFee, Milestone, Retainer, RetainerEntry
from tests import billing_fixtures as make
from tests.test_quickbooks import (  # noqa: F401 (fixtures)
    fake,
    mapped,
    month,
    push_now,
    pusher,
    queue,
    quickbooks_fake,
)

OCTOBER = Period.month("2026-10")


def test_fee_and_drawdown_lines_go_to_quickbooks_and_the_export(mapped, fake, pusher):  # noqa: F811
    acme = mapped["client"]
    site = make.project(acme, "SITE", name="Acme website", billing="fixed_fee")
    fee = FixedFee.objects.create(project=site, fee=D("1000.00"))
    Milestone.objects.create(fixed_fee=fee, name="Design", percent=D("50"), due_on=OCTOBER.end)
    ana = make.person("Ben Okafor", "Partner")
    make.entry(site, ana, minutes=60, notes="Wireframes")
    Retainer.objects.create(client=acme)
    RetainerEntry.objects.create(
        client=acme, kind="top_up", amount=D("100.00"), on_date=dt.date(2026, 10, 1)
    )
    [draft] = draft_invoices(period=OCTOBER).invoices
    # 400 time + 500 fee = 900; the ACME cap takes 50; 10 % of 850 = 85; the retainer pays 100.
    assert (draft.subtotal, draft.adjustments, draft.discount, draft.total) == (
        D("900.00"),
        D("-150.00"),
        D("-85.00"),
        D("665.00"),
    )
    invoice = approve_invoice(invoice=draft, user=pusher)
    assert push_now(queue(invoice, pusher)).status == "pushed"
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
    ]
    adjust = mapped["adjust_item"]
    assert ("Acme website: Design", adjust, D("1.0000"), D("500.00"), D("500.00")) in lines
    assert lines[-1] == ("Retainer drawdown", adjust, D("1.0000"), D("-100.00"), D("-100.00"))
    assert sum(amount for *_, amount in lines) == D("665.00")

    [exported] = export_period(period=OCTOBER)["invoices"]
    by_kind = {line["kind"]: line for line in exported["lines"]}
    assert by_kind["fixed_fee"]["fixed_fee"]["realization_percent"] == "250.0"
    assert by_kind["no_charge"]["fixed_fee_time"]["standard_amount"] == "200.00"
    assert by_kind["drawdown"]["retainer"]["drawn"] == "100.00"
    assert exported["adjustments"] == "-150.00"
