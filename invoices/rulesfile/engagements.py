"""Section 13's terms in the rules file: a fixed-fee project's fee and milestones, a client's
retainer and its engagement caps, written after the projects (and exported beside them).

Like the rest of the file, the listed clients' terms are what the file says: a fixed fee, a
retainer or an engagement cap the file no longer lists for a listed client is deleted, except
what an approved invoice holds (a billed milestone stays, with its fee). The retainer's ledger
is never written here but once: `opening_balance` is a top-up made only while the client has no
ledger row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet

from invoices.engagement_ledger import mark_client_drafts_stale
from invoices.models import EngagementCap, FixedFee, Milestone, Retainer, RetainerEntry
from invoices.rulesfile.schema import ClientSpec, FixedFeeSpec, ProjectSpec
from invoices.rulesfile.summary import Tally
from timesheets.models import Client, Project

# An opening balance is there before any period the firm bills.
OPENING_DATE = dt.date(2000, 1, 1)


def write_engagements(*, specs: list[ClientSpec], clients: dict[int, Client], tally: Tally) -> None:
    """Every listed client's fixed fees, retainer and engagement caps; a client whose terms
    changed has its drafts marked stale, as a change of its policy does."""
    for ci, spec in enumerate(specs):
        client = clients[ci]
        before = (tally.created, tally.updated, tally.deleted)
        projects = {p.name.casefold(): p for p in Project.objects.filter(client=client)}
        for project_spec in spec.projects:
            _write_fixed_fee(projects[project_spec.name.casefold()], project_spec, tally)
        _write_retainer(client, spec, tally)
        _write_caps(client, spec, projects, tally)
        if (tally.created, tally.updated, tally.deleted) != before:
            mark_client_drafts_stale(client_id=client.pk, reason="rules file: engagement terms")


def _write_fixed_fee(project: Project, spec: ProjectSpec, tally: Tally) -> None:
    existing = FixedFee.objects.filter(project=project).first()
    if spec.fixed_fee is None:
        if existing is not None and not _billed(existing).exists():
            existing.delete()
            tally.deleted += 1
        return
    values = {"fee": spec.fixed_fee.fee, "show_time": spec.fixed_fee.show_time}
    if existing is None:
        existing = FixedFee.objects.create(project=project, **values)
        tally.created += 1
    else:
        _save(existing, values, tally)
    _write_milestones(existing, spec.fixed_fee, tally)


def _billed(fee: FixedFee) -> QuerySet[Milestone]:
    return fee.milestones.filter(billed_on__isnull=False).exclude(billed_on__status="void")


def _write_milestones(fee: FixedFee, spec: FixedFeeSpec, tally: Tally) -> None:
    """By name; a milestone an approved invoice billed is kept as it is."""
    billed = set(_billed(fee).values_list("pk", flat=True))
    rows = {m.name.casefold(): m for m in fee.milestones.all()}
    for item in spec.milestones:
        values = {"amount": item.amount, "percent": item.percent, "due_on": item.due}
        row = rows.pop(item.name.casefold(), None)
        if row is None:
            Milestone.objects.create(fixed_fee=fee, name=item.name, **values)
            tally.created += 1
        elif row.pk not in billed:
            _save(row, values, tally)
    for row in rows.values():
        if row.pk not in billed:
            row.delete()
            tally.deleted += 1


def _write_retainer(client: Client, spec: ClientSpec, tally: Tally) -> None:
    existing = Retainer.objects.filter(client=client).first()
    if spec.retainer is None:
        if existing is not None:
            existing.delete()  # the ledger stays: it records what approved invoices drew
            tally.deleted += 1
        return
    values = {"monthly_amount": spec.retainer.monthly_amount, "rollover": spec.retainer.rollover}
    if existing is None:
        Retainer.objects.create(client=client, **values)
        tally.created += 1
    else:
        _save(existing, values, tally)
    opening = spec.retainer.opening_balance
    if opening and not RetainerEntry.objects.filter(client=client).exists():
        RetainerEntry.objects.create(
            client=client,
            kind=RetainerEntry.Kind.TOP_UP,
            amount=opening,
            on_date=OPENING_DATE,
            note="opening balance (rules file)",
        )
        tally.created += 1


def _write_caps(
    client: Client, spec: ClientSpec, projects: dict[str, Project], tally: Tally
) -> None:
    """By (project, start); the file's caps replace the client's."""
    by_code = {(p.code or p.name).casefold(): p for p in projects.values()}
    rows = {(c.project_id, c.starts_on): c for c in EngagementCap.objects.filter(client=client)}
    for item in spec.engagement_caps:
        project = by_code[item.project.casefold()]
        values = {"hours": item.hours, "amount": item.amount, "ends_on": item.ends_on}
        row = rows.pop((project.pk, item.starts_on), None)
        if row is None:
            EngagementCap.objects.create(
                client=client, project=project, starts_on=item.starts_on, **values
            )
            tally.created += 1
        else:
            _save(row, values, tally)
    for row in rows.values():
        row.delete()
        tally.deleted += 1


def _save(row: Any, values: dict[str, Any], tally: Tally) -> None:
    if all(getattr(row, name) == value for name, value in values.items()):
        tally.unchanged += 1
        return
    for name, value in values.items():
        setattr(row, name, value)
    row.save(update_fields=list(values))
    tally.updated += 1


def export_fixed_fee(project: Project, fees: dict[int, FixedFee]) -> dict[str, Any] | None:
    """A project's `fixed_fee` item, or None."""
    fee = fees.get(project.pk)
    if fee is None:
        return None
    milestones = []
    for m in fee.milestones.all():
        item: dict[str, Any] = {"name": m.name}
        item["amount" if m.amount is not None else "percent"] = (
            m.amount if m.amount is not None else m.percent
        )
        if m.due_on:
            item["due"] = m.due_on
        milestones.append(item)
    return {"fee": fee.fee, "show_time": fee.show_time, "milestones": milestones}


def export_client_terms(client: Client, projects: dict[int, Project]) -> dict[str, Any]:
    """A client's `retainer` and `engagement_caps` items (absent when it has none)."""
    item: dict[str, Any] = {}
    retainer = Retainer.objects.filter(client=client).first()
    if retainer is not None:
        item["retainer"] = {"rollover": retainer.rollover}
        if retainer.monthly_amount is not None:
            item["retainer"]["monthly_amount"] = retainer.monthly_amount
    caps = EngagementCap.objects.filter(client=client).order_by("project_id", "starts_on")
    if caps:
        item["engagement_caps"] = [
            {
                "project": projects[c.project_id].code or projects[c.project_id].name,
                **({"hours": c.hours} if c.hours is not None else {}),
                **({"amount": c.amount} if c.amount is not None else {}),
                "from": c.starts_on,
                "to": c.ends_on,
            }
            for c in caps
        ]
    return item
