"""A validated rules document -> the database, in one transaction.

The file is the whole billing configuration, applied with these semantics:
- firm settings: updated in place (the one Firm row);
- categories, people, clients, projects: upserted, so their ids (which entries, invoices and
  classifications point at) survive a re-import. Categories absent from the file are deleted,
  or refused while something still uses them; people, clients and projects absent from the
  file are kept untouched, since time entries point at them;
- each listed client's policy is set to exactly what the file says (defaults for what it
  leaves out);
- rows that only exist as configuration (classification rules, rates, billing codes, rate
  multipliers, caps) are replaced wholesale for the firm and for every listed client: deleted,
  then created from the file. Rows of clients absent from the file are left alone.

Problems only the database can reveal (a used category left out, a project code that belongs
to another client) are collected before anything is written and raised together.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.db.models import Q, QuerySet

from invoices.models import (
    BillingCode,
    Cap,
    Category,
    Classification,
    ClassificationRule,
    ClientPolicy,
    Firm,
    InvoiceLine,
    Rate,
    RateMultiplier,
)
from invoices.rulesfile.errors import RulesError, RulesFileInvalid
from invoices.rulesfile.loading import check_references, load_rules
from invoices.rulesfile.schema import ClientSpec, ProjectSpec, RulesDocument, RuleSpec
from timesheets.models import Client, Person, Project


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deleted} deleted"
        )


@dataclass
class ApplySummary:
    """What an import did, per kind of row."""

    firm: str = "unchanged"  # or "updated"
    categories: Tally = field(default_factory=Tally)
    people: Tally = field(default_factory=Tally)
    clients: Tally = field(default_factory=Tally)
    projects: Tally = field(default_factory=Tally)
    policies: Tally = field(default_factory=Tally)
    # Replaced wholesale: `deleted` old rows, `created` new ones.
    rules: Tally = field(default_factory=Tally)
    rates: Tally = field(default_factory=Tally)
    billing_codes: Tally = field(default_factory=Tally)
    rate_multipliers: Tally = field(default_factory=Tally)
    caps: Tally = field(default_factory=Tally)
    # Kept because time entries may point at them, but worth a look.
    people_not_in_file: list[str] = field(default_factory=list)
    clients_not_in_file: list[str] = field(default_factory=list)
    projects_not_in_file: list[str] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        out = [
            f"firm: {self.firm}",
            f"categories: {self.categories}",
            f"people: {self.people}",
            f"clients: {self.clients}",
            f"projects: {self.projects}",
            f"client policies: {self.policies}",
            f"classification rules: {self.rules}",
            f"rates: {self.rates}",
            f"billing codes: {self.billing_codes}",
            f"rate multipliers: {self.rate_multipliers}",
            f"caps: {self.caps}",
        ]
        for label, names in (
            ("people", self.people_not_in_file),
            ("clients", self.clients_not_in_file),
            ("projects", self.projects_not_in_file),
        ):
            if names:
                out.append(f"{label} not in the file, kept unchanged: {', '.join(names)}")
        if self.dry_run:
            out.append("dry run: the file is valid; nothing was saved")
        return out


def import_rules(text: str, *, dry_run: bool = False) -> ApplySummary:
    """Validate and apply a rules file, all or nothing. With dry_run, roll back at the end."""
    document = load_rules(text)
    with transaction.atomic():
        summary = apply_rules(document)
        if dry_run:
            transaction.set_rollback(True)
            summary.dry_run = True
    if not dry_run:
        # Rules are re-created, so decisions must be re-taken: they name the rule that decided
        # them, and changed rules may decide differently. Frozen entries are not touched.
        from invoices.classification import classify_entries, entries_to_classify

        classify_entries(entries_to_classify())
    return summary


def apply_rules(document: RulesDocument) -> ApplySummary:
    """Make the database's billing configuration what the document says (module docstring)."""
    check_references(document)
    with transaction.atomic():
        # One import at a time: two interleaved wholesale replacements would mix their rows.
        Firm.load()
        firm = Firm.objects.select_for_update().get(pk=1)
        plan = _Plan.read(document)
        errors = plan.problems()
        if errors:
            raise RulesFileInvalid(errors)
        return plan.write(firm)


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


def _counted(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _joined(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass
class _Plan:
    """The document beside the rows it will update, read before anything is written."""

    document: RulesDocument
    categories: dict[str, Category]
    people: dict[str, Person]  # by casefolded email
    clients: dict[int, Client | None]  # by client index in the file; None: to create
    # (client index, project index) -> the existing project it updates
    projects: dict[tuple[int, int], Project]
    # project index -> code owner in the database, for codes that belong to another client
    foreign_codes: dict[tuple[int, int], Project]

    @classmethod
    def read(cls, document: RulesDocument) -> _Plan:
        by_name = {c.name.casefold(): c for c in Client.objects.all()}
        clients = {i: by_name.get(spec.name.casefold()) for i, spec in enumerate(document.clients)}
        client_ids = [c.id for c in clients.values() if c is not None]
        by_code = {
            p.code.casefold(): p for p in Project.objects.exclude(code="").select_related("client")
        }
        own: dict[int, list[Project]] = {}
        for project in Project.objects.filter(client_id__in=client_ids):
            own.setdefault(project.client_id, []).append(project)

        matched: dict[tuple[int, int], Project] = {}
        foreign: dict[tuple[int, int], Project] = {}
        used: set[int] = set()
        # By code first, then by name among what is left, so that a project listed by code
        # is never also claimed by another listed project of the same name.
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
        return cls(
            document=document,
            categories={c.key: c for c in Category.objects.all()},
            people={p.email.casefold(): p for p in Person.objects.all()},
            clients=clients,
            projects=matched,
            foreign_codes=foreign,
        )

    # --- checks -----------------------------------------------------------------------------

    def problems(self) -> list[RulesError]:
        errors: list[RulesError] = []
        for (ci, pj), existing in sorted(self.foreign_codes.items()):
            errors.append(
                RulesError(
                    path=f"clients[{ci}].projects[{pj}].code",
                    message=f"project {existing.code!r} belongs to client "
                    f"{existing.client.name!r} in the database; a project cannot move to "
                    "another client",
                )
            )
        errors.extend(self._name_clashes())
        errors.extend(self._absent_categories_in_use())
        return errors

    def _name_clashes(self) -> list[RulesError]:
        """A renamed project may not take the name of a project the file does not list."""
        errors = []
        matched_ids = {p.id for p in self.projects.values()}
        for ci, spec in enumerate(self.document.clients):
            client = self.clients[ci]
            if client is None:
                continue
            unlisted = {
                p.name.casefold(): p
                for p in Project.objects.filter(client=client).exclude(id__in=matched_ids)
            }
            for pj, project_spec in enumerate(spec.projects):
                if (ci, pj) in self.foreign_codes:
                    continue  # reported as such; its name is moot until that is settled
                other = unlisted.get(project_spec.name.casefold())
                if other is not None:
                    code = f" (code {other.code})" if other.code else ""
                    errors.append(
                        RulesError(
                            path=f"clients[{ci}].projects[{pj}].name",
                            message=f"another project of this client is called {other.name!r}"
                            f"{code} in the database and the file does not list it; list it "
                            "or choose another name",
                        )
                    )
        return errors

    def _absent_categories_in_use(self) -> list[RulesError]:
        listed = {c.key for c in self.document.categories}
        absent = [c for key, c in sorted(self.categories.items()) if key not in listed]
        if not absent:
            return []
        # Rows of the listed clients and firm-wide rules are about to be replaced, so only
        # what stays counts: classifications, invoice lines, and rows of clients not listed.
        listed_ids = [c.id for c in self.clients.values() if c is not None]
        errors = []
        for category in absent:
            uses = []
            entries = Classification.objects.filter(
                Q(category=category) | Q(manual_category=category)
            ).count()
            if entries:
                uses.append(_counted(entries, "classified entry", "classified entries"))
            lines = InvoiceLine.objects.filter(category=category).count()
            if lines:
                uses.append(_counted(lines, "invoice line", "invoice lines"))
            for model, singular, plural in (
                (ClassificationRule, "rule", "rules"),
                (BillingCode, "billing code", "billing codes"),
                (RateMultiplier, "rate multiplier", "rate multipliers"),
            ):
                n = (
                    model.objects.filter(category=category, client__isnull=False)
                    .exclude(client_id__in=listed_ids)
                    .count()
                )
                if n:
                    uses.append(_counted(n, singular, plural) + " of clients not in the file")
            if uses:
                errors.append(
                    RulesError(
                        path="categories",
                        message=f"{category.key!r} is absent but used by {_joined(uses)}; "
                        "keep it in the file",
                    )
                )
        return errors

    # --- writing ----------------------------------------------------------------------------

    def write(self, firm: Firm) -> ApplySummary:
        summary = ApplySummary()
        doc = self.document
        firm_values: dict[str, object] = {
            "name": doc.firm.name,
            "currency": doc.firm.currency,
            "default_rate": doc.firm.default_rate,
        }
        if _differs(firm, firm_values):
            for name, value in firm_values.items():
                setattr(firm, name, value)
            firm.save(update_fields=list(firm_values))
            summary.firm = "updated"

        for spec in doc.categories:
            values: dict[str, object] = {
                "name": spec.name,
                "billable": spec.billable,
                "billing_code": spec.billing_code or "",
            }
            existing = self.categories.get(spec.key)
            if existing is None:
                self.categories[spec.key] = Category.objects.create(key=spec.key, **values)
                summary.categories.created += 1
            else:
                _save(existing, values, summary.categories)

        listed_emails = set()
        for spec in doc.people:
            listed_emails.add(spec.email.casefold())
            values = {"email": spec.email, "name": spec.name, "role": spec.role or ""}
            person = self.people.get(spec.email.casefold())
            if person is None:
                self.people[spec.email.casefold()] = Person.objects.create(**values)
                summary.people.created += 1
            else:
                _save(person, values, summary.people)
        summary.people_not_in_file = sorted(
            p.email for key, p in self.people.items() if key not in listed_emails
        )

        clients: dict[int, Client] = {}
        for ci, spec in enumerate(doc.clients):
            client = self.clients[ci]
            if client is None:
                client = Client.objects.create(name=spec.name)
                summary.clients.created += 1
            else:
                _save(client, {"name": spec.name}, summary.clients)
            clients[ci] = client
        listed_ids = [c.id for c in clients.values()]
        summary.clients_not_in_file = list(
            Client.objects.exclude(id__in=listed_ids)
            .order_by("name")
            .values_list("name", flat=True)
        )

        projects = self._write_projects(clients, summary)
        for ci, spec in enumerate(doc.clients):
            self._write_policy(clients[ci], spec, summary)

        self._delete_replaced(listed_ids, summary)
        self._delete_absent_categories(summary)
        self._create_rows(clients, projects, summary)
        return summary

    def _write_projects(
        self, clients: dict[int, Client], summary: ApplySummary
    ) -> dict[str, Project]:
        """Create and update the listed projects; returns them by casefolded code."""
        doc = self.document

        def values_of(spec: ProjectSpec) -> dict[str, object]:
            return {"code": spec.code or "", "name": spec.name, "billing": spec.billing}

        changing = [
            project
            for (ci, pj), project in self.projects.items()
            if _differs(project, values_of(doc.clients[ci].projects[pj]))
        ]
        # Codes and names are unique (per firm, per client) row by row, not at commit: two
        # projects swapping names would collide half-way, so changing rows first step aside.
        for project in changing:
            Project.objects.filter(pk=project.pk).update(code="", name=f"~rules-file-{project.pk}")

        by_code: dict[str, Project] = {}
        listed: set[int] = set()
        for ci, spec in enumerate(doc.clients):
            for pj, project_spec in enumerate(spec.projects):
                values = values_of(project_spec)
                project = self.projects.get((ci, pj))
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

    def _write_policy(self, client: Client, spec: ClientSpec, summary: ApplySummary) -> None:
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
            "invoice_per_project": spec.invoice_per_project,
            "payment_terms_days": spec.payment_terms_days,
        }
        non_billable = [self.categories[key] for key in dict.fromkeys(spec.non_billable_categories)]
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

    def _delete_replaced(self, listed_ids: list[int], summary: ApplySummary) -> None:
        listed = Q(client_id__in=listed_ids)
        # A project row belongs to its project's client whatever its own client column says
        # (invoices.configuration reads it that way).
        listed_or_project = listed | Q(project__client_id__in=listed_ids)
        deletions: list[tuple[Tally, QuerySet[Any]]] = [
            (summary.rules, ClassificationRule.objects.filter(listed | Q(client__isnull=True))),
            (
                summary.rates,
                Rate.objects.filter(
                    listed_or_project | Q(client__isnull=True, project__isnull=True)
                ),
            ),
            (summary.billing_codes, BillingCode.objects.filter(listed)),
            (summary.rate_multipliers, RateMultiplier.objects.filter(listed)),
            (summary.caps, Cap.objects.filter(listed_or_project)),
        ]
        for tally, queryset in deletions:
            _, by_model = queryset.delete()
            tally.deleted = by_model.get(queryset.model._meta.label, 0)

    def _delete_absent_categories(self, summary: ApplySummary) -> None:
        listed = {c.key for c in self.document.categories}
        absent = [key for key in self.categories if key not in listed]
        if absent:
            # problems() has made sure nothing PROTECTs them any more.
            Category.objects.filter(key__in=absent).delete()
            summary.categories.deleted = len(absent)
            for key in absent:
                del self.categories[key]

    def _create_rows(
        self, clients: dict[int, Client], projects: dict[str, Project], summary: ApplySummary
    ) -> None:
        doc = self.document
        rules: list[ClassificationRule] = []
        rates: list[Rate] = []
        codes: list[BillingCode] = []
        multipliers: list[RateMultiplier] = []
        caps: list[Cap] = []

        def rule_row(spec: RuleSpec, client: Client | None) -> ClassificationRule:
            return ClassificationRule(
                client=client,
                priority=spec.priority,
                task=spec.task or "",
                notes_regex=spec.notes_regex or "",
                project=projects[spec.project.casefold()] if spec.project else None,
                category=self.categories[spec.category],
            )

        def rate_row(
            *,
            client: Client | None,
            project: str | None,
            person: str | None,
            role: str | None,
            rate: Decimal,
            valid_from: dt.date | None,
            valid_to: dt.date | None,
        ) -> Rate:
            return Rate(
                client=client,
                project=projects[project.casefold()] if project else None,
                person=self.people[person.casefold()] if person else None,
                role=role or "",
                rate=rate,
                valid_from=valid_from,
                valid_to=valid_to,
            )

        rules.extend(rule_row(spec, None) for spec in doc.rules)
        for spec in doc.rates:
            rates.append(
                rate_row(
                    client=None,
                    project=None,
                    person=spec.person,
                    role=spec.role,
                    rate=spec.rate,
                    valid_from=spec.valid_from,
                    valid_to=spec.valid_to,
                )
            )
        for ci, spec in enumerate(doc.clients):
            client = clients[ci]
            for rate in spec.rates:
                rates.append(
                    rate_row(
                        client=client,
                        project=rate.project,
                        person=rate.person,
                        role=rate.role,
                        rate=rate.rate,
                        valid_from=rate.valid_from,
                        valid_to=rate.valid_to,
                    )
                )
            rules.extend(rule_row(rule, client) for rule in spec.rules)
            codes.extend(
                BillingCode(client=client, category=self.categories[key], code=code)
                for key, code in spec.billing_codes.items()
            )
            multipliers.extend(
                RateMultiplier(client=client, category=self.categories[key], factor=factor)
                for key, factor in spec.rate_multipliers.items()
            )
            caps.extend(
                Cap(client=client, project=projects[cap.project.casefold()], amount=cap.amount)
                for cap in spec.caps
            )

        # bulk_create keeps the file's order in the ids, and rules of equal priority are
        # tried by id: the order in the file is the order of trial.
        ClassificationRule.objects.bulk_create(rules)
        Rate.objects.bulk_create(rates)
        BillingCode.objects.bulk_create(codes)
        RateMultiplier.objects.bulk_create(multipliers)
        Cap.objects.bulk_create(caps)
        summary.rules.created = len(rules)
        summary.rates.created = len(rates)
        summary.billing_codes.created = len(codes)
        summary.rate_multipliers.created = len(multipliers)
        summary.caps.created = len(caps)
