"""Loads billing configuration rows into the plain values of `invoices.core`.

Each loader runs a fixed number of queries whatever the number of clients or entries, so
classification and drafting never query per entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from invoices.core.classify import CategoryInfo, NotesPatternRefused, Rule, compile_notes_pattern
from invoices.core.policy import GroupBy, Policy, RoundingLocus, RoundingMode
from invoices.core.rates import RateRow, RateTable
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    ClassificationRule,
    ClientPolicy,
    Firm,
    Rate,
    RateMultiplier,
)


def load_categories() -> tuple[dict[str, CategoryInfo], dict[str, int]]:
    """Categories by key, and their row ids by key."""
    rows = list(Category.objects.all())
    infos = {
        c.key: CategoryInfo(
            key=c.key, name=c.name, billable=c.billable, billing_code=c.billing_code
        )
        for c in rows
    }
    return infos, {c.key: c.id for c in rows}


def load_rules() -> list[Rule]:
    rules = []
    for row in ClassificationRule.objects.select_related("category"):
        rules.append(
            Rule(
                id=row.id,
                category=row.category.key,
                priority=row.priority,
                client=row.client_id,
                task=row.task,
                # IGNORECASE is not implied: a rule writes (?i) when it wants it.
                notes_regex=_compiled(row) if row.notes_regex else None,
                project=row.project_id,
            )
        )
    return rules


def _compiled(row: ClassificationRule) -> object:
    try:
        return compile_notes_pattern(row.notes_regex)
    except NotesPatternRefused as refused:
        # Saved before rules ran on RE2 (the admin and the rules file refuse it now): stop
        # with the rule's name rather than classify as if the rule did not exist.
        raise NotesPatternRefused(
            row.notes_regex, f"{refused.reason}; correct classification rule #{row.id}"
        ) from refused


def load_rate_table() -> RateTable:
    rows = [
        RateRow(
            id=r.id,
            rate=r.rate,
            # A project row competes inside its client; the loader does not trust the row to
            # carry both.
            client=r.project.client_id if r.project is not None else r.client_id,
            project=r.project_id,
            person=r.person_id,
            role=r.role,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
        )
        for r in Rate.objects.select_related("project")
    ]
    firm = Firm.load()
    if firm.default_rate is not None:
        rows.append(RateRow(id="firm default", rate=firm.default_rate))
    return RateTable(rows)


@dataclass(frozen=True)
class Configuration:
    categories: dict[str, CategoryInfo]
    category_ids: dict[str, int]
    rules: list[Rule]
    rates: RateTable
    policies: dict[int, Policy]

    def policy(self, client_id: int) -> Policy:
        return self.policies.get(client_id) or self.policies[0]


def load_policies(client_ids: Iterable[int] | None = None) -> dict[int, Policy]:
    """Policies by client id; key 0 holds the defaults for a client without a policy row."""
    firm = Firm.load()
    policies_qs = ClientPolicy.objects.prefetch_related("non_billable_categories")
    codes_qs = BillingCode.objects.select_related("category")
    multipliers_qs = RateMultiplier.objects.select_related("category")
    caps_qs = Cap.objects.select_related("project")
    if client_ids is not None:
        ids = list(client_ids)
        policies_qs = policies_qs.filter(client_id__in=ids)
        codes_qs = codes_qs.filter(client_id__in=ids)
        multipliers_qs = multipliers_qs.filter(client_id__in=ids)
        caps_qs = caps_qs.filter(client_id__in=ids)

    codes: dict[int, dict[str, str]] = defaultdict(dict)
    for code in codes_qs:
        codes[code.client_id][code.category.key] = code.code
    multipliers: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for mult in multipliers_qs:
        multipliers[mult.client_id][mult.category.key] = mult.factor
    caps: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for cap in caps_qs:
        caps[cap.client_id][cap.project.code or cap.project.name] = cap.amount

    policies = {0: Policy(currency=firm.currency)}
    for p in policies_qs:
        policies[p.client_id] = Policy(
            currency=(p.currency or firm.currency).upper(),
            increment_minutes=p.rounding_increment_minutes,
            rounding_mode=RoundingMode(p.rounding_mode),
            rounding_locus=RoundingLocus(p.rounding_locus),
            minimum_minutes=p.minimum_minutes,
            non_billable_categories=frozenset(c.key for c in p.non_billable_categories.all()),
            billing_codes=codes[p.client_id],
            require_billing_codes=p.require_billing_codes,
            rate_multipliers=multipliers[p.client_id],
            discount_percent=p.discount_percent,
            caps=caps[p.client_id],
            group_lines_by=GroupBy(p.group_lines_by),
            show_non_billable=p.show_non_billable,
            bill_approved_only=p.bill_approved_only,
            invoice_per_project=p.invoice_per_project,
            payment_terms_days=p.payment_terms_days,
        )
    return policies


def load_configuration(client_ids: Iterable[int] | None = None) -> Configuration:
    categories, category_ids = load_categories()
    return Configuration(
        categories=categories,
        category_ids=category_ids,
        rules=load_rules(),
        rates=load_rate_table(),
        policies=load_policies(client_ids),
    )
