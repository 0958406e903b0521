"""Reading an import's plan: the rules document beside the database rows it will update,
matched by natural key before anything is written (see `invoices.rulesfile.applying`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from invoices.models import (
    BillingCode,
    Cap,
    Category,
    ClassificationRule,
    Rate,
    RateMultiplier,
    TaxCode,
)
from invoices.rulesfile import rows
from invoices.rulesfile.rows import Matched, Refs, Wanted
from invoices.rulesfile.schema import RulesDocument
from timesheets.models import Client, Person, Project

# (client index, project index) in the file -> a project of the database
ProjectsByPlace = dict[tuple[int, int], Project]


@dataclass
class Plan:
    """The document beside the rows it will update, read before anything is written."""

    document: RulesDocument
    categories: dict[str, Category]
    people: dict[str, Person]  # by casefolded email
    clients: dict[int, Client | None]  # by client index in the file; None: to create
    # (client index, project index) -> the existing project it updates
    projects: ProjectsByPlace
    # project index -> code owner in the database, for codes that belong to another client
    foreign_codes: ProjectsByPlace
    prune: bool
    # The file's rules, rates, codes, multipliers and caps beside the rows they update.
    rules: Matched
    rates: Matched
    billing_codes: Matched
    rate_multipliers: Matched
    caps: Matched
    # Billing semantics 12: the firm's tax codes by name (the file's are written first).
    tax_codes: dict[str, TaxCode] = field(default_factory=dict)

    @classmethod
    def read(cls, document: RulesDocument, *, prune: bool) -> Plan:
        by_name = {c.name.casefold(): c for c in Client.objects.all()}
        clients = {i: by_name.get(spec.name.casefold()) for i, spec in enumerate(document.clients)}
        client_ids = [c.id for c in clients.values() if c is not None]
        matched, foreign = _match_projects(document, clients, client_ids)
        categories = {c.key: c for c in Category.objects.all()}
        people = {p.email.casefold(): p for p in Person.objects.all()}
        refs = Refs(
            clients={i: c.id for i, c in clients.items() if c is not None},
            projects={
                code.casefold(): project.id
                for (ci, pj), project in matched.items()
                if (code := document.clients[ci].projects[pj].code)
            },
            people={email: p.id for email, p in people.items()},
            categories={key: c.id for key, c in categories.items()},
        )
        return cls(
            document=document,
            categories=categories,
            people=people,
            clients=clients,
            projects=matched,
            foreign_codes=foreign,
            prune=prune,
            **_match_rows(document, refs, client_ids),
            tax_codes={code.name: code for code in TaxCode.objects.all()},
        )


def _match_projects(
    document: RulesDocument, clients: dict[int, Client | None], client_ids: list[int]
) -> tuple[ProjectsByPlace, ProjectsByPlace]:
    """The file's projects beside the database's: those they update, and those whose code
    belongs to another client.

    By code first, then by name among what is left, so that a project listed by code is never
    also claimed by another listed project of the same name."""
    matched: ProjectsByPlace = {}
    foreign: ProjectsByPlace = {}
    used: set[int] = set()
    _match_projects_by_code(document, clients, matched, foreign, used)
    _match_projects_by_name(document, clients, client_ids, matched, foreign, used)
    return matched, foreign


def _match_projects_by_code(
    document: RulesDocument,
    clients: dict[int, Client | None],
    matched: ProjectsByPlace,
    foreign: ProjectsByPlace,
    used: set[int],
) -> None:
    by_code = {
        p.code.casefold(): p for p in Project.objects.exclude(code="").select_related("client")
    }
    for ci, spec in enumerate(document.clients):
        client = clients[ci]
        for pj, project_spec in enumerate(spec.projects):
            if project_spec.code is None:
                continue
            existing = by_code.get(project_spec.code.casefold())
            if existing is None:
                continue
            if client is None or existing.client_id != client.id:
                foreign[(ci, pj)] = existing
            else:
                matched[(ci, pj)] = existing
                used.add(existing.id)


def _match_projects_by_name(
    document: RulesDocument,
    clients: dict[int, Client | None],
    client_ids: list[int],
    matched: ProjectsByPlace,
    foreign: ProjectsByPlace,
    used: set[int],
) -> None:
    own: dict[int, list[Project]] = {}
    for project in Project.objects.filter(client_id__in=client_ids):
        own.setdefault(project.client_id, []).append(project)
    for ci, spec in enumerate(document.clients):
        client = clients[ci]
        if client is None:
            continue
        for pj, project_spec in enumerate(spec.projects):
            if (ci, pj) in matched or (ci, pj) in foreign:
                continue
            for existing in own.get(client.id, []):
                if existing.id not in used and (
                    existing.name.casefold() == project_spec.name.casefold()
                ):
                    matched[(ci, pj)] = existing
                    used.add(existing.id)
                    break


def _match_rows(document: RulesDocument, refs: Refs, client_ids: list[int]) -> dict[str, Matched]:
    """The file's rows beside the database rows of its scope (see `invoices.rulesfile.rows`)."""
    listed = set(client_ids)
    scopes: list[tuple[str, int | None, Any]] = [("", None, document)]
    scopes += [(f"clients[{ci}].", ci, spec) for ci, spec in enumerate(document.clients)]

    wanted_rules, wanted_rates = [], []
    wanted_codes, wanted_multipliers, wanted_caps = [], [], []
    for prefix, ci, container in scopes:
        client = refs.client(ci)
        for r, rule in enumerate(container.rules):
            key = rows.rule_key(
                client,
                rule.task or "",
                rule.notes_regex or "",
                refs.project(rule.project),
                refs.category(rule.category),
            )
            wanted_rules.append(Wanted(f"{prefix}rules[{r}]", ci, rule, key))
        for r, rate in enumerate(container.rates):
            key = rows.rate_key(
                client,
                refs.project(getattr(rate, "project", None)),
                refs.person(rate.person),
                rate.role or "",
                rate.valid_from,
            )
            wanted_rates.append(Wanted(f"{prefix}rates[{r}]", ci, rate, key))
        if ci is None:
            continue
        for name, code in container.billing_codes.items():
            key = (client, refs.category(name))
            wanted_codes.append(Wanted(f"{prefix}billing_codes.{name}", ci, (name, code), key))
        for name, factor in container.rate_multipliers.items():
            key = (client, refs.category(name))
            path = f"{prefix}rate_multipliers.{name}"
            wanted_multipliers.append(Wanted(path, ci, (name, factor), key))
        for c, cap in enumerate(container.caps):
            wanted_caps.append(Wanted(f"{prefix}caps[{c}]", ci, cap, (refs.project(cap.project),)))

    listed_q = Q(client_id__in=listed)
    rules = rows.match(
        wanted_rules,
        ClassificationRule.objects.filter(listed_q | Q(client__isnull=True)).select_related(
            "client", "project", "category"
        ),
        rows.rule_row_key,
        prefer=rows.same_priority_first,
    )
    rows.keep_order_of_trial(rules.wanted)
    rate_rows = [
        r
        for r in Rate.objects.filter(
            listed_q | Q(project__client_id__in=listed) | Q(client__isnull=True)
        ).select_related("client", "project__client", "person")
        if rows.rate_client_id(r) in listed or (r.client_id is None and r.project_id is None)
    ]
    cap_rows = Cap.objects.filter(listed_q | Q(project__client_id__in=listed)).select_related(
        "project__client"
    )
    return {
        "rules": rules,
        "rates": rows.match(wanted_rates, rate_rows, rows.rate_row_key),
        "billing_codes": rows.match(
            wanted_codes,
            BillingCode.objects.filter(listed_q).select_related("client", "category"),
            lambda row: (row.client_id, row.category_id),
        ),
        "rate_multipliers": rows.match(
            wanted_multipliers,
            RateMultiplier.objects.filter(listed_q).select_related("client", "category"),
            lambda row: (row.client_id, row.category_id),
        ),
        "caps": rows.match(wanted_caps, cap_rows, lambda row: (row.project_id,)),
    }
