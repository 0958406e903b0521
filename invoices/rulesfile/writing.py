"""Writing an import's plan: every row the file lists is updated only if it changed, created
if new; rows the file does not list are deleted only with prune (see
`invoices.rulesfile.applying`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models

from invoices.models import (
    BillingCode,
    Cap,
    Category,
    ClassificationRule,
    ClientPolicy,
    Firm,
    Rate,
    RateMultiplier,
    TaxCode,
)
from invoices.rulesfile import rows
from invoices.rulesfile.engagements import write_engagements
from invoices.rulesfile.planning import Plan
from invoices.rulesfile.rows import Matched, Wanted
from invoices.rulesfile.schema import ClientSpec, ProjectSpec
from invoices.rulesfile.summary import ApplySummary, Tally
from timesheets.models import Client, Person, Project


def write(plan: Plan, firm: Firm) -> ApplySummary:
    """Apply the plan, section by section of the file, and say what changed."""
    summary = ApplySummary()
    _write_firm(plan, firm, summary)
    _write_tax_codes(plan, summary)
    _write_categories(plan, summary)
    _write_people(plan, summary)
    clients = _write_clients(plan, summary)
    projects = _write_projects(plan, clients, summary)
    for ci, spec in enumerate(plan.document.clients):
        _write_policy(plan, clients[ci], spec, summary)

    _delete_rows(plan, summary)
    _delete_absent_categories(plan, summary)
    _write_rows(plan, clients, projects, summary)
    # Billing semantics 13: fixed fees, retainers, engagement caps.
    write_engagements(specs=plan.document.clients, clients=clients, tally=summary.engagements)
    return summary


def _write_firm(plan: Plan, firm: Firm, summary: ApplySummary) -> None:
    doc = plan.document
    firm_values: dict[str, object] = {
        "name": doc.firm.name,
        "currency": doc.firm.currency,
        "default_rate": doc.firm.default_rate,
        "address": doc.firm.address or "",
        "tax_id": doc.firm.tax_id or "",
        "logo_url": doc.firm.logo_url or "",
        "payment_instructions": doc.firm.payment_instructions or "",
        "tax_calculation": doc.firm.tax_calculation,
    }
    if _differs(firm, firm_values):
        for name, value in firm_values.items():
            setattr(firm, name, value)
        firm.save(update_fields=list(firm_values))
        summary.firm = "updated"


def _write_tax_codes(plan: Plan, summary: ApplySummary) -> None:
    """Billing semantics 12.1: the file's codes, created or updated by name; a code the file
    does not list is kept (lines and policies may name it). `applies_after` is set once every
    code exists, so a code may name one listed after it."""
    for spec in plan.document.tax_codes:
        values: dict[str, object] = {
            "rate": spec.rate,
            "compound": spec.compound,
            "quickbooks_id": spec.quickbooks_id or "",
        }
        existing = plan.tax_codes.get(spec.name)
        if existing is None:
            plan.tax_codes[spec.name] = TaxCode.objects.create(name=spec.name, **values)
            summary.tax_codes.created += 1
        else:
            _save(existing, values, summary.tax_codes)
    for spec in plan.document.tax_codes:
        code = plan.tax_codes[spec.name]
        earlier = plan.tax_codes[spec.applies_after] if spec.applies_after else None
        if code.applies_after_id != (earlier.pk if earlier else None):
            code.applies_after = earlier
            code.save(update_fields=["applies_after"])


def _write_categories(plan: Plan, summary: ApplySummary) -> None:
    for spec in plan.document.categories:
        values: dict[str, object] = {
            "name": spec.name,
            "billable": spec.billable,
            "billing_code": spec.billing_code or "",
            "utbms_task_code": spec.utbms_task_code or "",
            "utbms_activity_code": spec.utbms_activity_code or "",
        }
        existing = plan.categories.get(spec.key)
        if existing is None:
            plan.categories[spec.key] = Category.objects.create(key=spec.key, **values)
            summary.categories.created += 1
        else:
            _save(existing, values, summary.categories)


def _write_people(plan: Plan, summary: ApplySummary) -> None:
    listed_emails = set()
    for spec in plan.document.people:
        listed_emails.add(spec.email.casefold())
        values: dict[str, object] = {
            "email": spec.email,
            "name": spec.name,
            "role": spec.role or "",
        }
        person = plan.people.get(spec.email.casefold())
        if person is None:
            plan.people[spec.email.casefold()] = Person.objects.create(**values)
            summary.people.created += 1
        else:
            _save(person, values, summary.people)
    summary.people_not_in_file = sorted(
        p.email for key, p in plan.people.items() if key not in listed_emails
    )


def _write_clients(plan: Plan, summary: ApplySummary) -> dict[int, Client]:
    """Create and rename the listed clients; returns them by client index in the file."""
    clients: dict[int, Client] = {}
    for ci, spec in enumerate(plan.document.clients):
        client = plan.clients[ci]
        if client is None:
            client = Client.objects.create(name=spec.name)
            summary.clients.created += 1
        else:
            _save(client, {"name": spec.name}, summary.clients)
        clients[ci] = client
    listed_ids = [c.id for c in clients.values()]
    summary.clients_not_in_file = list(
        Client.objects.exclude(id__in=listed_ids).order_by("name").values_list("name", flat=True)
    )
    return clients


def _write_projects(
    plan: Plan, clients: dict[int, Client], summary: ApplySummary
) -> dict[str, Project]:
    """Create and update the listed projects; returns them by casefolded code."""
    doc = plan.document

    def values_of(spec: ProjectSpec) -> dict[str, object]:
        return {"code": spec.code or "", "name": spec.name, "billing": spec.billing}

    changing = [
        project
        for (ci, pj), project in plan.projects.items()
        if _differs(project, values_of(doc.clients[ci].projects[pj]))
    ]
    # Codes and names are unique (per firm, per client) row by row, not at commit: two
    # projects swapping names would collide half-way, so changing rows first step aside.
    for moving in changing:
        Project.objects.filter(pk=moving.pk).update(code="", name=f"~rules-file-{moving.pk}")

    by_code: dict[str, Project] = {}
    listed: set[int] = set()
    for ci, spec in enumerate(doc.clients):
        for pj, project_spec in enumerate(spec.projects):
            values = values_of(project_spec)
            project = plan.projects.get((ci, pj))
            if project is None:
                project = Project.objects.create(client=clients[ci], **values)
                summary.projects.created += 1
            else:
                _save(project, values, summary.projects)
            listed.add(project.id)
            if project.code:
                by_code[project.code.casefold()] = project
    summary.projects_not_in_file = [
        str(p)
        for p in Project.objects.filter(client__in=clients.values())
        .exclude(id__in=listed)
        .select_related("client")
        .order_by("client__name", "name")
    ]
    return by_code


def _write_policy(plan: Plan, client: Client, spec: ClientSpec, summary: ApplySummary) -> None:
    values: dict[str, object] = {
        "currency": spec.currency or "",
        "rounding_increment_minutes": spec.rounding.increment_minutes,
        "rounding_mode": spec.rounding.mode,
        "rounding_locus": spec.rounding.locus,
        "minimum_minutes": spec.minimum_minutes,
        "require_billing_codes": spec.require_billing_codes,
        "discount_percent": spec.discount_percent,
        "group_lines_by": spec.group_lines_by,
        "show_non_billable": spec.show_non_billable,
        "bill_approved_only": spec.bill_approved_only,
        "invoice_per_project": spec.invoice_per_project,
        "payment_terms_days": spec.payment_terms_days,
        "billing_address": spec.billing_address or "",
        "billing_email": spec.billing_email or "",
        "po_number": spec.po_number or "",
        "requires_utbms": spec.requires_utbms,
        "ledes_client_id": spec.ledes_client_id or "",
        "tax_code": plan.tax_codes[spec.tax_code] if spec.tax_code else None,
    }
    non_billable = [plan.categories[key] for key in dict.fromkeys(spec.non_billable_categories)]
    policy = ClientPolicy.objects.filter(client=client).first()
    if policy is None:
        policy = ClientPolicy.objects.create(client=client, **values)
        policy.non_billable_categories.set(non_billable)
        summary.policies.created += 1
        return
    before = set(policy.non_billable_categories.values_list("id", flat=True))
    if _differs(policy, values) or before != {c.id for c in non_billable}:
        for name, value in values.items():
            setattr(policy, name, value)
        policy.save(update_fields=list(values))
        policy.non_billable_categories.set(non_billable)
        summary.policies.updated += 1
    else:
        summary.policies.unchanged += 1


def _kinds(plan: Plan, summary: ApplySummary) -> list[tuple[str, Matched, Tally, Any]]:
    return [
        ("classification rules", plan.rules, summary.rules, rows.describe_rule),
        ("rates", plan.rates, summary.rates, rows.describe_rate),
        (
            "billing codes",
            plan.billing_codes,
            summary.billing_codes,
            rows.describe_billing_code,
        ),
        (
            "rate multipliers",
            plan.rate_multipliers,
            summary.rate_multipliers,
            rows.describe_multiplier,
        ),
        ("caps", plan.caps, summary.caps, rows.describe_cap),
    ]


def _delete_rows(plan: Plan, summary: ApplySummary) -> None:
    """Deletions first: a rate row pruned may be the one a new row takes the dates of."""
    summary.pruned = plan.prune
    summary.not_in_file["categories"] = []  # filled by _delete_absent_categories
    summary.rules_recreated = [rows.describe_rule(r) for r in plan.rules.recreated()]
    for label, matched, tally, describe in _kinds(plan, summary):
        summary.not_in_file[label] = [describe(row) for row in matched.unlisted]
        doomed = [row.pk for row in matched.recreated()]
        if plan.prune:
            doomed += [row.pk for row in matched.unlisted]
        if doomed:
            model = type((matched.recreated() or matched.unlisted)[0])
            model.objects.filter(pk__in=doomed).delete()
            tally.deleted = len(doomed)


def _delete_absent_categories(plan: Plan, summary: ApplySummary) -> None:
    listed = {c.key for c in plan.document.categories}
    absent = [key for key in sorted(plan.categories) if key not in listed]
    summary.not_in_file["categories"] = absent
    if absent and plan.prune:
        # problems() has made sure nothing PROTECTs them any more.
        Category.objects.filter(key__in=absent).delete()
        summary.categories.deleted = len(absent)
        for key in absent:
            del plan.categories[key]


@dataclass
class _RowValues:
    """The database values of the file's rules, rates, codes, multipliers and caps, with the
    file's names (client index, project code, category key, email) turned into ids."""

    plan: Plan
    clients: dict[int, Client]
    projects: dict[str, Project]  # by casefolded code

    def client_id(self, item: Wanted) -> int | None:
        return self.clients[item.client].id if item.client is not None else None

    def project_id(self, code: str | None) -> int | None:
        return self.projects[code.casefold()].id if code else None

    def category_id(self, key: str) -> int:
        return self.plan.categories[key].id

    def rule(self, item: Wanted) -> dict[str, object]:
        spec = item.spec
        return {
            "client_id": self.client_id(item),
            "priority": spec.priority,
            "task": spec.task or "",
            "notes_regex": spec.notes_regex or "",
            "project_id": self.project_id(spec.project),
            "category_id": self.category_id(spec.category),
        }

    def rate(self, item: Wanted) -> dict[str, object]:
        spec = item.spec
        return {
            "client_id": self.client_id(item),
            "project_id": self.project_id(getattr(spec, "project", None)),
            "person_id": self.plan.people[spec.person.casefold()].id if spec.person else None,
            "role": spec.role or "",
            "rate": spec.rate,
            "valid_from": spec.valid_from,
            "valid_to": spec.valid_to,
        }

    def billing_code(self, item: Wanted) -> dict[str, object]:
        key, code = item.spec
        return {
            "client_id": self.client_id(item),
            "category_id": self.category_id(key),
            "code": code,
        }

    def multiplier(self, item: Wanted) -> dict[str, object]:
        key, factor = item.spec
        return {
            "client_id": self.client_id(item),
            "category_id": self.category_id(key),
            "factor": factor,
        }

    def cap(self, item: Wanted) -> dict[str, object]:
        return {
            "client_id": self.client_id(item),
            "project_id": self.project_id(item.spec.project),
            "amount": item.spec.amount,
        }


def _write_rows(
    plan: Plan, clients: dict[int, Client], projects: dict[str, Project], summary: ApplySummary
) -> None:
    """Update what changed, then create what is new, in the order of the file."""
    values = _RowValues(plan=plan, clients=clients, projects=projects)
    writes: list[tuple[Matched, Tally, type[models.Model], Any]] = [
        (plan.rules, summary.rules, ClassificationRule, values.rule),
        (plan.rates, summary.rates, Rate, values.rate),
        (plan.billing_codes, summary.billing_codes, BillingCode, values.billing_code),
        (plan.rate_multipliers, summary.rate_multipliers, RateMultiplier, values.multiplier),
        (plan.caps, summary.caps, Cap, values.cap),
    ]
    for matched, tally, model, values_of in writes:
        # Updates before creations: a rate row ended here makes room for a new one.
        for item in matched.updates():
            _save(item.existing, values_of(item), tally)
        # bulk_create keeps the file's order in the ids, and rules of equal priority are
        # tried by id: the order in the file is the order of trial.
        created = model._default_manager.bulk_create(
            [model(**values_of(item)) for item in matched.creations()]
        )
        tally.created = len(created)


def _differs(row: models.Model, values: dict[str, object]) -> bool:
    return any(getattr(row, name) != value for name, value in values.items())


def _save(row: models.Model, values: dict[str, object], tally: Tally) -> None:
    if _differs(row, values):
        for name, value in values.items():
            setattr(row, name, value)
        row.save(update_fields=list(values))
        tally.updated += 1
    else:
        tally.unchanged += 1
