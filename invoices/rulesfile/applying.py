"""A validated rules document -> the database, in one transaction.

The file is the whole billing configuration, applied with these semantics:
- firm settings: updated in place (the one Firm row);
- every row is matched to the database by its natural key and written only if it changed, so
  an unchanged import writes nothing (no new ids, no audit rows), and the ids that entries,
  classifications and invoice lines cite survive a re-import:
  categories by key, people by email, clients by name, projects by code (else name within the
  client), and rules, rates, billing codes, rate multipliers and caps by the keys described in
  `invoices.rulesfile.rows`;
- each listed client's policy is set to exactly what the file says (defaults for what it
  leaves out);
- rows in the file's scope that the file does not list (categories, firm-wide rules and rates,
  and the rules, rates, codes, multipliers and caps of listed clients; e.g. made in the admin)
  are kept and named in the summary, and deleted only with `prune`. People, clients and
  projects absent from the file are always kept (time entries point at them), and the rows of
  clients absent from the file are left alone.

Problems only the database can reveal (a used category pruned, a project code that belongs to
another client, a kept rate the file would overlap) are collected before anything is written
and raised together.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.db.models import Q

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
from invoices.rulesfile import rows
from invoices.rulesfile.errors import RulesError, RulesFileInvalid
from invoices.rulesfile.loading import check_references, load_rules
from invoices.rulesfile.rows import Matched, Refs, Wanted
from invoices.rulesfile.schema import ClientSpec, ProjectSpec, RulesDocument
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
    rules: Tally = field(default_factory=Tally)
    rates: Tally = field(default_factory=Tally)
    billing_codes: Tally = field(default_factory=Tally)
    rate_multipliers: Tally = field(default_factory=Tally)
    caps: Tally = field(default_factory=Tally)
    # Kept because time entries may point at them, but worth a look.
    people_not_in_file: list[str] = field(default_factory=list)
    clients_not_in_file: list[str] = field(default_factory=list)
    projects_not_in_file: list[str] = field(default_factory=list)
    # Rows in the file's scope that it does not list, by kind (the labels of `lines()`):
    # kept, or deleted when `pruned`.
    not_in_file: dict[str, list[str]] = field(default_factory=dict)
    pruned: bool = False
    # Existing rules deleted and created anew to keep the file's order of trial.
    rules_recreated: list[str] = field(default_factory=list)
    dry_run: bool = False

    def changed(self) -> bool:
        tallies = (
            self.categories,
            self.people,
            self.clients,
            self.projects,
            self.policies,
            self.rules,
            self.rates,
            self.billing_codes,
            self.rate_multipliers,
            self.caps,
        )
        return self.firm != "unchanged" or any(t.created or t.updated or t.deleted for t in tallies)

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
        verdict = "deleted" if self.pruned else "kept (--prune deletes them)"
        for label, names in self.not_in_file.items():
            if names:
                out.append(f"{label} not in the file, {verdict}: {', '.join(names)}")
        if self.rules_recreated:
            out.append(
                "classification rules re-created so that rules of equal priority are tried in "
                f"the order of the file: {', '.join(self.rules_recreated)}"
            )
        if self.dry_run:
            out.append("dry run: the file is valid; nothing was saved")
        return out


def import_rules(text: str, *, dry_run: bool = False, prune: bool = False) -> ApplySummary:
    """Validate and apply a rules file, all or nothing. With dry_run, roll back at the end;
    with prune, delete the rows in the file's scope that it does not list."""
    document = load_rules(text)
    with transaction.atomic():
        summary = apply_rules(document, prune=prune)
        if dry_run:
            transaction.set_rollback(True)
            summary.dry_run = True
    if not dry_run and summary.changed():
        # Changed rules, policies or categories may decide differently: decisions are re-taken
        # (frozen entries are not touched). An import that changed nothing leaves them be.
        from invoices.classification import classify_entries, entries_to_classify

        classify_entries(entries_to_classify())
    return summary


def apply_rules(document: RulesDocument, *, prune: bool = False) -> ApplySummary:
    """Make the database's billing configuration what the document says (module docstring)."""
    check_references(document)
    with transaction.atomic():
        # One import at a time: two interleaved imports would match rows the other is changing.
        Firm.load()
        firm = Firm.objects.select_for_update().get(pk=1)
        plan = _Plan.read(document, prune=prune)
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
    prune: bool
    # The file's rules, rates, codes, multipliers and caps beside the rows they update.
    rules: Matched
    rates: Matched
    billing_codes: Matched
    rate_multipliers: Matched
    caps: Matched

    @classmethod
    def read(cls, document: RulesDocument, *, prune: bool) -> _Plan:
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
        categories = {c.key: c for c in Category.objects.all()}
        people = {p.email.casefold(): p for p in Person.objects.all()}
        refs = Refs(
            clients={i: c.id for i, c in clients.items() if c is not None},
            projects={
                spec.projects[pj].code.casefold(): project.id
                for (ci, pj), project in matched.items()
                for spec in (document.clients[ci],)
                if spec.projects[pj].code
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
        if self.prune:
            errors.extend(self._absent_categories_in_use())
        else:
            errors.extend(self._overlaps_with_kept_rates())
        return errors

    def _overlaps_with_kept_rates(self) -> list[RulesError]:
        """A rate the file does not list is kept (without prune): the file's rows for the same
        target must leave room for it, or the database's exclusion constraint would refuse the
        import with no word of which rows."""
        errors = []
        kept: dict[tuple, list[Rate]] = {}
        for row in self.rates.unlisted:
            kept.setdefault(rows.rate_row_key(row)[:4], []).append(row)
        for item in self.rates.wanted:
            start, end = item.spec.valid_from, item.spec.valid_to
            for row in kept.get(item.key[:4], []):
                lo = max(start or dt.date.min, row.valid_from or dt.date.min)
                hi = min(end or dt.date.max, row.valid_to or dt.date.max)
                if lo > hi:
                    continue
                errors.append(
                    RulesError(
                        path=item.path,
                        message=f"overlaps rate #{row.pk} ({rows.rate_target(row)}, "
                        f"{rows.date_range(*_open(lo, hi))}), which the file does not list; "
                        "list it in the file, or end this row before it, or import with --prune",
                    )
                )
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
        # With prune, the rows of the listed clients and firm-wide ones that the file does not
        # list are deleted and those it lists name listed categories, so only what stays
        # counts: classifications, invoice lines, and rows of clients not listed.
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
            "address": doc.firm.address or "",
            "tax_id": doc.firm.tax_id or "",
            "logo_url": doc.firm.logo_url or "",
            "payment_instructions": doc.firm.payment_instructions or "",
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

        self._delete_rows(summary)
        self._delete_absent_categories(summary)
        self._write_rows(clients, projects, summary)
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
            "bill_approved_only": spec.bill_approved_only,
            "invoice_per_project": spec.invoice_per_project,
            "payment_terms_days": spec.payment_terms_days,
            "billing_address": spec.billing_address or "",
            "billing_email": spec.billing_email or "",
            "po_number": spec.po_number or "",
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

    def _kinds(self, summary: ApplySummary) -> list[tuple[str, Matched, Tally, Any]]:
        return [
            ("classification rules", self.rules, summary.rules, rows.describe_rule),
            ("rates", self.rates, summary.rates, rows.describe_rate),
            (
                "billing codes",
                self.billing_codes,
                summary.billing_codes,
                rows.describe_billing_code,
            ),
            (
                "rate multipliers",
                self.rate_multipliers,
                summary.rate_multipliers,
                rows.describe_multiplier,
            ),
            ("caps", self.caps, summary.caps, rows.describe_cap),
        ]

    def _delete_rows(self, summary: ApplySummary) -> None:
        """Deletions first: a rate row pruned may be the one a new row takes the dates of."""
        summary.pruned = self.prune
        summary.not_in_file["categories"] = []  # filled by _delete_absent_categories
        summary.rules_recreated = [rows.describe_rule(r) for r in self.rules.recreated()]
        for label, matched, tally, describe in self._kinds(summary):
            summary.not_in_file[label] = [describe(row) for row in matched.unlisted]
            doomed = [row.pk for row in matched.recreated()]
            if self.prune:
                doomed += [row.pk for row in matched.unlisted]
            if doomed:
                model = type((matched.recreated() or matched.unlisted)[0])
                model.objects.filter(pk__in=doomed).delete()
                tally.deleted = len(doomed)

    def _delete_absent_categories(self, summary: ApplySummary) -> None:
        listed = {c.key for c in self.document.categories}
        absent = [key for key in sorted(self.categories) if key not in listed]
        summary.not_in_file["categories"] = absent
        if absent and self.prune:
            # problems() has made sure nothing PROTECTs them any more.
            Category.objects.filter(key__in=absent).delete()
            summary.categories.deleted = len(absent)
            for key in absent:
                del self.categories[key]

    def _write_rows(
        self, clients: dict[int, Client], projects: dict[str, Project], summary: ApplySummary
    ) -> None:
        """Update what changed, then create what is new, in the order of the file."""

        def client_id(item: Wanted) -> int | None:
            return clients[item.client].id if item.client is not None else None

        def project_id(code: str | None) -> int | None:
            return projects[code.casefold()].id if code else None

        def category_id(key: str) -> int:
            return self.categories[key].id

        def rule_values(item: Wanted) -> dict[str, object]:
            spec = item.spec
            return {
                "client_id": client_id(item),
                "priority": spec.priority,
                "task": spec.task or "",
                "notes_regex": spec.notes_regex or "",
                "project_id": project_id(spec.project),
                "category_id": category_id(spec.category),
            }

        def rate_values(item: Wanted) -> dict[str, object]:
            spec = item.spec
            return {
                "client_id": client_id(item),
                "project_id": project_id(getattr(spec, "project", None)),
                "person_id": self.people[spec.person.casefold()].id if spec.person else None,
                "role": spec.role or "",
                "rate": spec.rate,
                "valid_from": spec.valid_from,
                "valid_to": spec.valid_to,
            }

        def code_values(item: Wanted) -> dict[str, object]:
            key, code = item.spec
            return {"client_id": client_id(item), "category_id": category_id(key), "code": code}

        def multiplier_values(item: Wanted) -> dict[str, object]:
            key, factor = item.spec
            return {
                "client_id": client_id(item),
                "category_id": category_id(key),
                "factor": factor,
            }

        def cap_values(item: Wanted) -> dict[str, object]:
            return {
                "client_id": client_id(item),
                "project_id": project_id(item.spec.project),
                "amount": item.spec.amount,
            }

        writes: list[tuple[Matched, Tally, type[models.Model], Any]] = [
            (self.rules, summary.rules, ClassificationRule, rule_values),
            (self.rates, summary.rates, Rate, rate_values),
            (self.billing_codes, summary.billing_codes, BillingCode, code_values),
            (self.rate_multipliers, summary.rate_multipliers, RateMultiplier, multiplier_values),
            (self.caps, summary.caps, Cap, cap_values),
        ]
        for matched, tally, model, values_of in writes:
            # Updates before creations: a rate row ended here makes room for a new one.
            for item in matched.updates():
                _save(item.existing, values_of(item), tally)
            # bulk_create keeps the file's order in the ids, and rules of equal priority are
            # tried by id: the order in the file is the order of trial.
            created = model.objects.bulk_create(
                [model(**values_of(item)) for item in matched.creations()]
            )
            tally.created = len(created)


def _open(lo: dt.date, hi: dt.date) -> tuple[dt.date | None, dt.date | None]:
    return (None if lo == dt.date.min else lo, None if hi == dt.date.max else hi)


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
