"""Loads billing configuration rows into the plain values of `invoices.core`.

Each loader runs a fixed number of queries whatever the number of clients or entries, so
classification and drafting never query per entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from invoices.core.classify import CategoryInfo, NotesPatternRefused, Rule, compile_notes_pattern
from invoices.core.policy import GroupBy, Policy, RoundingLocus, RoundingMode
from invoices.core.rates import RateRow, RateTable
from invoices.core.tax import TaxCode as TaxCodeValue
from invoices.core.tax import TaxLocus, TaxPolicy, TaxRate
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
    TaxOverride,
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
    # Billing semantics 12: each client's tax settings; key 0 for a client without a policy.
    taxes: dict[int, TaxPolicy] = field(default_factory=dict)

    def policy(self, client_id: int) -> Policy:
        return self.policies.get(client_id) or self.policies[0]

    def tax(self, client_id: int) -> TaxPolicy | None:
        return self.taxes.get(client_id) or self.taxes.get(0)


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
        taxes=load_taxes(client_ids),
    )


def load_taxes(client_ids: Iterable[int] | None = None) -> dict[int, TaxPolicy]:
    """Each client's `TaxPolicy` (section 12) in four queries, whatever the number of clients:
    the firm, the codes, the overrides and the policies' default code ids."""
    firm = Firm.load()
    rows = {row.id: row for row in TaxCode.objects.all()}
    codes = {pk: _tax_code_value(row, rows) for pk, row in rows.items()}
    by_category: dict[str, TaxCodeValue | None] = {}
    by_kind: dict[str, TaxCodeValue | None] = {}
    for override in TaxOverride.objects.select_related("category"):
        code = codes.get(override.tax_code_id) if override.tax_code_id else None
        if override.category is not None:
            by_category[override.category.key] = code
        else:
            by_kind[override.line_kind] = code
    policies_qs = ClientPolicy.objects.filter(tax_code__isnull=False)
    if client_ids is not None:
        policies_qs = policies_qs.filter(client_id__in=list(client_ids))
    locus = TaxLocus(firm.tax_calculation)
    base = TaxPolicy(locus=locus, by_category=by_category, by_kind=by_kind)
    taxes = {0: base}
    for client_id, code_id in policies_qs.values_list("client_id", "tax_code_id"):
        taxes[client_id] = TaxPolicy(
            locus=locus, default=codes[code_id], by_category=by_category, by_kind=by_kind
        )
    return taxes


def _tax_code_value(row: TaxCode, rows: dict[int, TaxCode]) -> TaxCodeValue:
    """A code and the codes it applies after, earliest first (section 12.1); a loop in the
    chain stops at the first code seen twice (the admin and the rules file refuse one)."""
    chain: list[TaxCode] = []
    current: TaxCode | None = row
    while current is not None and current not in chain:
        chain.append(current)
        current = rows.get(current.applies_after_id) if current.applies_after_id else None
    rates = tuple(
        TaxRate(name=r.name, percent=r.rate, compound=r.compound) for r in reversed(chain)
    )
    return TaxCodeValue(name=row.name, rates=rates, quickbooks_id=row.quickbooks_id)
