"""What a classification rule would do before it is saved: a what-if, in memory only.

The period's entries are classified twice with the same loaded configuration, once with the
rules as they are and once with the edited rule in place, and each invoice scope is priced
both ways with `invoices.core.pricing.price_invoice`. Nothing is written: the preview shows
which entries the rule matches, which decisions it changes, and how each invoice total moves.
Entries frozen on an approved invoice are listed as such and never re-priced (section 8).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from invoices.classification import (
    _manual,
    _model_answer,
    approved_memory,
    confidence_threshold,
    model_tier_status,
)
from invoices.configuration import Configuration, load_configuration
from invoices.core.classify import (
    Decision,
    EntryFacts,
    Rule,
    classify,
    compile_notes_pattern,
    order_rules,
)
from invoices.core.pricing import PricedEntry, PricingError, price_invoice
from invoices.drafting import Period
from invoices.models import Classification, ClassificationRule, Invoice, InvoiceStatus
from timesheets.models import Client, TimeEntry

# Enough to judge a rule; the counts cover every entry.
MAX_LISTED_ENTRIES = 200


@dataclass(frozen=True)
class EntryChange:
    entry: TimeEntry
    before: Decision
    after: Decision
    decides: bool  # the rule is the tier that decides the entry (not only a match)
    frozen: bool  # on an approved invoice: shown, never re-priced

    @property
    def changed(self) -> bool:
        b, a = self.before, self.after
        return (b.category, b.billable, b.needs_review, b.billing_code) != (
            a.category,
            a.billable,
            a.needs_review,
            a.billing_code,
        )


@dataclass(frozen=True)
class TotalChange:
    client: str
    scope: str
    currency: str
    invoice: Invoice | None
    before: Decimal
    after: Decimal
    pending_before: int
    pending_after: int
    error: str = ""

    @property
    def delta(self) -> Decimal:
        return self.after - self.before


@dataclass
class RulePreview:
    period: Period
    matched: int = 0
    decided: int = 0
    changed: int = 0
    frozen: int = 0
    entries: list[EntryChange] = field(default_factory=list)
    totals: list[TotalChange] = field(default_factory=list)

    @property
    def more_entries(self) -> int:
        return max(0, self.matched - len(self.entries))


def preview_rule(*, rule: ClassificationRule, period: Period) -> RulePreview:
    """`rule` is an unsaved (or edited, unsaved) instance; nothing is written."""
    preview = RulePreview(period=period)
    entries_qs = TimeEntry.objects.filter(date__gte=period.start, date__lte=period.end)
    if rule.client_id is not None:
        entries_qs = entries_qs.filter(client_id=rule.client_id)
    client_ids = sorted(set(entries_qs.values_list("client_id", flat=True)))
    if not client_ids:
        return preview
    config = load_configuration(client_ids)
    edited = _as_core_rule(rule, config)
    current_rules = config.rules
    edited_rules = [r for r in current_rules if r.id != edited.id] + [edited]
    memory = approved_memory(client_ids)
    key_by_id = {pk: key for key, pk in config.category_ids.items()}
    threshold, reason = confidence_threshold(), model_tier_status()

    entries = list(
        entries_qs.select_related("person", "project", "client", "classification").order_by(
            "client_id", "date", "id"
        )
    )
    frozen_ids = set(
        TimeEntry.objects.filter(
            id__in=[e.id for e in entries],
            invoice_links__is_live=True,
            invoice_links__invoice__status=InvoiceStatus.APPROVED,
        ).values_list("id", flat=True)
    )
    ordered = {
        client_id: (order_rules(current_rules, client_id), order_rules(edited_rules, client_id))
        for client_id in client_ids
    }
    scopes: dict[tuple[int, int | None], tuple[list[PricedEntry], list[PricedEntry]]] = defaultdict(
        lambda: ([], [])
    )
    for entry in entries:
        facts = EntryFacts(
            id=entry.id,
            client=entry.client_id,
            project=entry.project_id,
            project_billable=entry.project.is_billable,
            task=entry.task,
            notes=entry.notes,
            normalized_notes=entry.normalized_notes,
            tracker_billable=entry.tracker_billable,
        )
        existing = getattr(entry, "classification", None)
        kwargs = {
            "policy": config.policy(entry.client_id),
            "categories": config.categories,
            "memory": memory.get(entry.client_id, {}),
            "manual": _manual(existing, key_by_id),
            "model": _model_answer(existing, key_by_id),
            "model_reason": reason,
            "threshold": threshold,
        }
        rules_before, rules_after = ordered[entry.client_id]
        before = classify(facts, rules=rules_before, **kwargs)
        after = classify(facts, rules=rules_after, **kwargs)
        frozen = entry.id in frozen_ids
        if edited.matches(facts):
            change = EntryChange(entry, before, after, after.rule_id == edited.id, frozen)
            preview.matched += 1
            preview.decided += change.decides
            preview.changed += change.changed and not frozen
            preview.frozen += frozen
            if len(preview.entries) < MAX_LISTED_ENTRIES:
                preview.entries.append(change)
        if frozen:
            continue
        policy = config.policy(entry.client_id)
        scope = (entry.client_id, entry.project_id if policy.invoice_per_project else None)
        scopes[scope][0].append(_priced(entry, before, config))
        scopes[scope][1].append(_priced(entry, after, config))

    preview.totals = _totals(scopes, config, period, entries)
    return preview


def _as_core_rule(rule: ClassificationRule, config: Configuration) -> Rule:
    category = rule.category
    # A new rule sorts after every existing one of the same priority, as it will once saved.
    rule_id = rule.pk or max((r.id for r in config.rules), default=0) + 1
    return Rule(
        id=rule_id,
        category=category.key,
        priority=rule.priority,
        client=rule.client_id,
        task=rule.task,
        notes_regex=compile_notes_pattern(rule.notes_regex) if rule.notes_regex else None,
        project=rule.project_id,
    )


def _priced(entry: TimeEntry, decision: Decision, config: Configuration) -> PricedEntry:
    info = config.categories.get(decision.category) if decision.category else None
    source = Classification.Tier(decision.tier).label
    if decision.tier == Classification.Tier.RULE and decision.rule_id:
        source = f"rule #{decision.rule_id}"
    return PricedEntry(
        id=entry.id,
        date=entry.date,
        seconds=entry.duration_seconds,
        person=entry.person_id,
        person_name=entry.person.name,
        role=entry.person.role,
        project=entry.project_id,
        project_code=entry.project.code or entry.project.name,
        project_name=entry.project.name,
        task=entry.task,
        category=info.key if info else None,
        category_name=info.name if info else "Uncategorized",
        description=decision.description or entry.notes,
        source_label=source,
        billable=decision.billable,
        billing_code=decision.billing_code,
        needs_review=decision.needs_review,
        review_reason=decision.reason or "not classified yet",
    )


def _totals(scopes, config: Configuration, period: Period, entries) -> list[TotalChange]:
    names = dict(Client.objects.filter(id__in={c for c, _ in scopes}).values_list("id", "name"))
    projects = {e.project_id: str(e.project) for e in entries}
    invoices = {
        (inv.client_id, inv.project_id): inv
        for inv in Invoice.objects.filter(
            client_id__in={c for c, _ in scopes},
            period_start=period.start,
            period_end=period.end,
            status=InvoiceStatus.DRAFT,
        )
    }
    totals = []
    for (client_id, project_id), (before, after) in sorted(
        scopes.items(), key=lambda item: (names[item[0][0]].casefold(), item[0][1] or 0)
    ):
        policy = config.policy(client_id)
        base = TotalChange(
            client=names[client_id],
            scope=projects.get(project_id, "") if project_id else "",
            currency=policy.currency,
            invoice=invoices.get((client_id, project_id)),
            before=Decimal(0),
            after=Decimal(0),
            pending_before=0,
            pending_after=0,
        )
        try:
            priced_before = price_invoice(
                before, policy=policy, rates=config.rates, client=client_id
            )
            priced_after = price_invoice(after, policy=policy, rates=config.rates, client=client_id)
        except PricingError as exc:
            totals.append(dataclasses.replace(base, error=str(exc)))
            continue
        totals.append(
            dataclasses.replace(
                base,
                before=priced_before.total,
                after=priced_after.total,
                pending_before=len(priced_before.pending),
                pending_after=len(priced_after.pending),
            )
        )
    return totals
