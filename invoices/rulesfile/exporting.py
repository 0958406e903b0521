"""The database's billing configuration -> a rules file (YAML text).

The output is canonical, so two databases with the same configuration export the same text
and a diff between two exports shows only real changes:
- rows sorted by their natural keys (categories by key, people by email, clients by name,
  projects by name, rates by level and target, rules by priority then id, which is the order
  they are tried in);
- fields in the order of `rules-file.example.yaml`, every policy field written even when it is
  the default (an explicit file is easier to review than one that relies on defaults);
- optional text left out when empty (a category's default billing code, a person's role, a
  project's code, a client's currency), since the file has no other way to say "empty";
- decimals as quoted strings exactly as stored ('150.00'), dates as YYYY-MM-DD.

Importing an export gives back the same configuration, and exporting that again gives the
same text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from invoices.core.rates import level_of
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    ClassificationRule,
    ClientPolicy,
    Firm,
    FixedFee,
    Rate,
    RateMultiplier,
    TaxCode,
)
from invoices.rulesfile.engagements import export_client_terms, export_fixed_fee
from invoices.rulesfile.errors import RulesExportError
from invoices.rulesfile.schema import PER_QUICKBOOKS
from timesheets.models import Client, Person, Project


class _Dumper(yaml.SafeDumper):
    pass


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    # Quoted, so no YAML reader turns '0.5' into a float on the way back in.
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="'")


_Dumper.add_representer(Decimal, _represent_decimal)


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # An address or payment instructions over several lines read as written (a `|` block),
    # not as one quoted line of "\n"s.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_text)

HEADER = "# Billing configuration, written by `manage.py export_rules`.\n"


def export_rules() -> str:
    """The whole billing configuration as rules-file YAML."""
    document = build_document()
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=4096,  # never fold a long regex or name over two lines
    )
    return HEADER + body


def build_document() -> dict[str, Any]:
    """The configuration as plain data in the rules file's shape."""
    firm = Firm.load()
    export = _Export(
        people={p.id: p for p in Person.objects.all()},
        projects={p.id: p for p in Project.objects.select_related("client")},
    )
    categories = _categories_part()
    rules_by_client = export.rules_by_client()
    people_part = export.people_part()
    rates_by_client = export.rates_by_client()
    clients_part = export.clients_part(rules_by_client, rates_by_client)
    if export.problems:
        raise RulesExportError(export.problems)
    tax_codes = _tax_codes_part()
    return {
        "firm": _firm_part(firm),
        # Billing semantics 12: only when the firm has tax codes (older files stay as they were).
        **({"tax_codes": tax_codes} if tax_codes else {}),
        "categories": categories,
        "rules": rules_by_client.get(None, []),
        "people": people_part,
        "rates": _sorted_rates(rates_by_client, None),
        "clients": clients_part,
    }


# Rate items by client id (None: firm-wide), each beside the key it is sorted by.
RatesByClient = dict[int | None, list[tuple[tuple[Any, ...], dict[str, Any]]]]
RulesByClient = dict[int | None, list[dict[str, Any]]]


def _firm_part(firm: Firm) -> dict[str, Any]:
    firm_part: dict[str, Any] = {"name": firm.name, "currency": firm.currency}
    if firm.default_rate is not None:
        firm_part["default_rate"] = firm.default_rate
    for name in ("address", "tax_id", "logo_url", "payment_instructions"):
        if getattr(firm, name):
            firm_part[name] = getattr(firm, name)
    if firm.tax_calculation != "invoice":
        firm_part["tax_calculation"] = firm.tax_calculation
    return firm_part


def _tax_codes_part() -> list[dict[str, Any]]:
    """The firm's tax codes by name; a per-QuickBooks rate as the words the file reads."""
    codes = []
    for code in TaxCode.objects.select_related("applies_after").order_by("name"):
        item: dict[str, Any] = {
            "name": code.name,
            "rate": PER_QUICKBOOKS if code.rate is None else Decimal(f"{code.rate.normalize():f}"),
            "compound": code.compound,
        }
        if code.applies_after is not None:
            item["applies_after"] = code.applies_after.name
        if code.quickbooks_id:
            item["quickbooks_id"] = code.quickbooks_id
        codes.append(item)
    return codes


def _categories_part() -> list[dict[str, Any]]:
    categories = []
    for category in sorted(Category.objects.all(), key=lambda c: c.key):
        item: dict[str, Any] = {
            "key": category.key,
            "name": category.name,
            "billable": category.billable,
        }
        if category.billing_code:
            item["billing_code"] = category.billing_code
        for name in ("utbms_task_code", "utbms_activity_code"):
            if getattr(category, name):
                item[name] = getattr(category, name)
        categories.append(item)
    return categories


def _sorted_rates(rates_by_client: RatesByClient, client_id: int | None) -> list[dict[str, Any]]:
    return [item for _, item in sorted(rates_by_client.get(client_id, []), key=_first)]


@dataclass
class _Export:
    """The rows every section refers to, and what cannot be written as a rules file (all
    collected, then raised together)."""

    people: dict[int, Person]
    projects: dict[int, Project]
    problems: list[str] = field(default_factory=list)

    def project_code(self, project_id: int, what: str) -> str:
        project = self.projects[project_id]
        if not project.code:
            self.problems.append(
                f"{what} refers to project {project.name!r} of {project.client.name!r}, which "
                "has no code; give the project a code"
            )
        return project.code

    def rules_by_client(self) -> RulesByClient:
        rules_by_client: RulesByClient = {}
        for rule in ClassificationRule.objects.select_related("category").order_by(
            "priority", "id"
        ):
            item: dict[str, Any] = {"priority": rule.priority}
            if rule.task:
                item["task"] = rule.task
            if rule.notes_regex:
                item["notes_regex"] = rule.notes_regex
            if rule.project_id is not None:
                item["project"] = self.project_code(
                    rule.project_id, f"classification rule #{rule.id}"
                )
            item["category"] = rule.category.key
            rules_by_client.setdefault(rule.client_id, []).append(item)
        return rules_by_client

    def people_part(self) -> list[dict[str, Any]]:
        people_part = []
        for person in sorted(self.people.values(), key=lambda p: p.email.casefold()):
            item = {"email": person.email, "name": person.name}
            if person.role:
                item["role"] = person.role
            people_part.append(item)
        return people_part

    def rates_by_client(self) -> RatesByClient:
        rates_by_client: RatesByClient = {}
        for rate in Rate.objects.all():
            # A project row belongs to its project's client (as invoices.configuration reads it).
            client_id = (
                self.projects[rate.project_id].client_id if rate.project_id else rate.client_id
            )
            if client_id is None and rate.person_id is None and not rate.role:
                self.problems.append(
                    f"rate #{rate.id} is a firm-wide row for no person and no role; the firm "
                    "default belongs in Firm.default_rate"
                )
                continue
            rates_by_client.setdefault(client_id, []).append(self.rate_item(rate, client_id))
        return rates_by_client

    def rate_item(
        self, rate: Rate, client_id: int | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A rate row as a file item, beside its sort key (level, then target, then start)."""
        item: dict[str, Any] = {}
        code = ""
        if rate.project_id is not None:
            code = self.project_code(rate.project_id, f"rate #{rate.id}")
            item["project"] = code
        email = self.people[rate.person_id].email if rate.person_id is not None else ""
        if email:
            item["person"] = email
        if rate.role:
            item["role"] = rate.role
        item["rate"] = rate.rate
        if rate.valid_from is not None:
            item["from"] = rate.valid_from
        if rate.valid_to is not None:
            item["to"] = rate.valid_to
        level = level_of(
            project=rate.project_id is not None,
            client=client_id is not None,
            person=rate.person_id is not None,
            role=bool(rate.role),
        )
        sort_key = (
            int(level),
            code.casefold(),
            email.casefold(),
            rate.role.casefold(),
            rate.valid_from or dt.date.min,
        )
        return sort_key, item

    def caps_by_client(self) -> dict[int, list[dict[str, Any]]]:
        caps: dict[int, list[dict[str, Any]]] = {}
        for cap in Cap.objects.all():
            code = self.project_code(cap.project_id, f"cap #{cap.id}")
            owner = self.projects[cap.project_id].client_id
            caps.setdefault(owner, []).append({"project": code, "amount": cap.amount})
        return caps

    def clients_part(
        self, rules_by_client: RulesByClient, rates_by_client: RatesByClient
    ) -> list[dict[str, Any]]:
        policies = {
            p.client_id: p for p in ClientPolicy.objects.prefetch_related("non_billable_categories")
        }
        codes: dict[int, dict[str, str]] = {}
        for code_row in BillingCode.objects.select_related("category"):
            codes.setdefault(code_row.client_id, {})[code_row.category.key] = code_row.code
        factors: dict[int, dict[str, Decimal]] = {}
        for multiplier in RateMultiplier.objects.select_related("category"):
            factors.setdefault(multiplier.client_id, {})[multiplier.category.key] = (
                multiplier.factor
            )
        caps = self.caps_by_client()
        fees = {f.project_id: f for f in FixedFee.objects.prefetch_related("milestones")}

        clients_part = []
        for client in sorted(Client.objects.all(), key=lambda c: c.name.casefold()):
            # A client without a policy row is priced with the defaults, which is what an
            # unsaved ClientPolicy holds.
            saved = client.id in policies
            policy = policies[client.id] if saved else ClientPolicy(client=client)
            item = _policy_item(client, policy, saved=saved)
            item["billing_codes"] = dict(sorted(codes.get(client.id, {}).items()))
            item["require_billing_codes"] = policy.require_billing_codes
            item["rate_multipliers"] = dict(sorted(factors.get(client.id, {}).items()))
            # An unsaved policy holds the int default 0; the column's scale is 2 places, which
            # is what a saved one reads back as, so a policy-less client exports like a
            # default one.
            item["discount_percent"] = policy.discount_percent if saved else Decimal("0.00")
            item["caps"] = sorted(caps.get(client.id, []), key=lambda c: c["project"].casefold())
            item.update(_policy_tail(policy))
            item.update(export_client_terms(client, self.projects))  # billing semantics 13
            item["projects"] = [
                _project_item(p, fees)
                for p in sorted(
                    (p for p in self.projects.values() if p.client_id == client.id),
                    key=lambda p: p.name.casefold(),
                )
            ]
            item["rates"] = _sorted_rates(rates_by_client, client.id)
            item["rules"] = rules_by_client.get(client.id, [])
            clients_part.append(item)
        return clients_part


def _policy_item(client: Client, policy: ClientPolicy, *, saved: bool) -> dict[str, Any]:
    """A client item's fields up to its non-billable categories, in the file's order."""
    item: dict[str, Any] = {"name": client.name}
    if policy.currency:
        item["currency"] = policy.currency
    item["rounding"] = {
        "increment_minutes": policy.rounding_increment_minutes,
        "mode": str(policy.rounding_mode),
        "locus": str(policy.rounding_locus),
    }
    item["minimum_minutes"] = policy.minimum_minutes
    item["non_billable_categories"] = (
        sorted(c.key for c in policy.non_billable_categories.all()) if saved else []
    )
    return item


def _policy_tail(policy: ClientPolicy) -> dict[str, Any]:
    """A client item's fields from its line grouping to its addressing, in the file's order."""
    item: dict[str, Any] = {
        "group_lines_by": str(policy.group_lines_by),
        "show_non_billable": policy.show_non_billable,
        "bill_approved_only": policy.bill_approved_only,
        "invoice_per_project": policy.invoice_per_project,
        "payment_terms_days": policy.payment_terms_days,
    }
    for name in ("billing_address", "billing_email", "po_number"):
        if getattr(policy, name):
            item[name] = getattr(policy, name)
    if policy.requires_utbms:
        item["requires_utbms"] = True
    if policy.ledes_client_id:
        item["ledes_client_id"] = policy.ledes_client_id
    if policy.tax_code_id is not None:
        item["tax_code"] = policy.tax_code.name if policy.tax_code else ""
    return item


def _first(pair: tuple[tuple[Any, ...], dict[str, Any]]) -> tuple[Any, ...]:
    return pair[0]


def _project_item(project: Project, fees: dict[int, FixedFee]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if project.code:
        item["code"] = project.code
    item["name"] = project.name
    item["billing"] = project.billing
    if (fixed_fee := export_fixed_fee(project, fees)) is not None:
        item["fixed_fee"] = fixed_fee
    return item
