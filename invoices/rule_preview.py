"""What a classification rule, or a whole rules file, would do before it is saved.

A rule (`preview_rule`) is a what-if in memory only: the period's entries are classified
twice with the same loaded configuration, once with the rules as they are and once with the
edited rule in place, and each invoice scope is priced both ways with
`invoices.core.pricing.price_invoice`. Nothing is written: the preview shows which entries the
rule matches, which decisions it changes, and how each invoice total moves. Entries frozen on
an approved invoice are listed as such and never re-priced (section 8).

A rules file (`preview_rules_file`) changes too much for a what-if in memory (categories,
rates, policies, codes, caps): it runs the real path, saving the file, re-classifying and
redrafting every open draft, inside a transaction that is rolled back, so the preview is
exactly what saving would do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q

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
    Tier,
    classify,
    compile_notes_pattern,
    order_rules,
)
from invoices.core.memory import ClientMemory
from invoices.core.pricing import PricedEntry, PricingError, price_invoice
from invoices.core.wording import client_wording
from invoices.drafting import Period, draft_invoices
from invoices.drafting_inputs import (
    hold_reason_of,
    load_engagements,
    load_inputs,
    source_label_of,
)
from invoices.models import (
    Classification,
    ClassificationRule,
    Invoice,
    InvoiceEntry,
    InvoiceStatus,
)
from invoices.rulesfile import ApplySummary, import_rules
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
    """`rule` is an unsaved (or edited, unsaved) instance; nothing is written.

    Each invoice scope is priced from what drafting itself would load
    (`invoices.drafting_inputs.load_inputs`: late time, held entries, write-downs, manual
    lines), with only the decision of each entry replaced, once by the rules as they are and
    once with the edited rule."""
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

    inputs = load_inputs(
        client_ids=client_ids,
        start=period.start,
        end=period.end,
        bill_approved_only={c: config.policy(c).bill_approved_only for c in client_ids},
        release_drafts=True,
    )
    late = [e.id for each in inputs.values() for e in each.entries if e.late_from is not None]
    entries = list(
        TimeEntry.objects.filter(Q(pk__in=entries_qs.values("pk")) | Q(pk__in=late))
        .select_related("person", "project", "client", "classification")
        .order_by("client_id", "date", "id")
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
    decisions: dict[int, tuple[TimeEntry, Decision, Decision]] = {}
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
        decide = functools.partial(
            classify,
            facts,
            policy=config.policy(entry.client_id),
            categories=config.categories,
            memory=memory.get(entry.client_id) or ClientMemory(),
            manual=_manual(existing, key_by_id),
            model=_model_answer(existing, key_by_id),
            model_reason=reason,
            threshold=threshold,
        )
        rules_before, rules_after = ordered[entry.client_id]
        before, after = decide(rules=rules_before), decide(rules=rules_after)
        decisions[entry.id] = (entry, before, after)
        frozen = entry.id in frozen_ids
        if edited.matches(facts) and entry.date >= period.start:
            change = EntryChange(entry, before, after, after.rule_id == edited.id, frozen)
            preview.matched += 1
            preview.decided += change.decides
            preview.changed += change.changed and not frozen
            preview.frozen += frozen
            if len(preview.entries) < MAX_LISTED_ENTRIES:
                preview.entries.append(change)

    preview.totals = _totals(_scopes(inputs, decisions, config, period), config, period, entries)
    return preview


Scopes = dict[tuple[int, int | None], tuple[list[PricedEntry], list[PricedEntry], list]]


def _scopes(inputs, decisions, config: Configuration, period: Period) -> Scopes:
    """Each invoice scope's entries priced with the decision before and after the rule, and its
    manual lines; scopes whose invoice of the period is approved are left out, as drafting
    leaves them."""
    frozen = set(
        Invoice.objects.filter(
            client_id__in=list(inputs),
            period_start=period.start,
            period_end=period.end,
            status=InvoiceStatus.APPROVED,
        ).values_list("client_id", "project_id")
    )
    scopes: Scopes = defaultdict(lambda: ([], [], []))
    for client_id, each in inputs.items():
        per_project = config.policy(client_id).invoice_per_project
        for priced in each.entries:
            scope = (client_id, priced.project if per_project else None)
            if scope in frozen:
                continue
            entry, before, after = decisions[priced.id]
            scopes[scope][0].append(_decided(priced, entry, before, config))
            scopes[scope][1].append(_decided(priced, entry, after, config))
        for charge in each.manual:
            scope = (client_id, charge.project if per_project else None)
            if scope not in frozen:
                scopes[scope][2].append(charge)
    return scopes


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


def _decided(
    priced: PricedEntry, entry: TimeEntry, decision: Decision, config: Configuration
) -> PricedEntry:
    """`priced` as drafting loaded it, with `decision` in place of its stored one (worded and
    held as drafting words and holds a decision)."""
    info = config.categories.get(decision.category) if decision.category else None
    source = source_label_of(decision.tier, decision.rule_id)
    existing = getattr(entry, "classification", None)
    deliberate = bool(
        existing
        and (
            existing.manual_description
            or (decision.tier == Tier.LLM and existing.model_description)
        )
    )
    return dataclasses.replace(
        priced,
        category=info.key if info else None,
        category_name=info.name if info else "Uncategorized",
        description=client_wording(
            worded=decision.description,
            notes=entry.notes,
            category_name=info.name if info else "",
            deliberate=deliberate,
        ),
        source_label=source,
        billable=decision.billable,
        billing_code=decision.billing_code,
        needs_review=decision.needs_review,
        review_reason=decision.reason or "not classified yet",
        hold_reason=hold_reason_of(
            source=entry.source,
            tracker_invoiced=entry.tracker_invoiced,
            tracker_approved=entry.tracker_approved,
            decided=True,
            released=existing is not None and existing.hold_released_at is not None,
            billable=decision.billable,
            needs_review=decision.needs_review,
            bill_approved_only=config.policy(entry.client_id).bill_approved_only,
        ),
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
    # Section 13: fixed fees, retainers and engagement caps price the preview as they do drafts.
    terms = load_engagements(client_ids={c for c, _ in scopes}, start=period.start, end=period.end)
    totals = []
    for (client_id, project_id), (before, after, manual) in sorted(
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
        engaged = terms.get(client_id)
        engagement = engaged.for_scope(project_id) if engaged else None
        try:
            priced_before = price_invoice(
                before,
                policy=policy,
                rates=config.rates,
                client=client_id,
                manual=manual,
                engagement=engagement,
            )
            priced_after = price_invoice(
                after,
                policy=policy,
                rates=config.rates,
                client=client_id,
                manual=manual,
                engagement=engagement,
            )
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


# --- The whole rules file: what saving it would change (issue 16, row 24) -------------------


@dataclass(frozen=True)
class InvoiceTotalChange:
    """An open draft whose total saving the file would change (old is None: a new draft;
    new is None: the draft would be removed, nothing left to bill)."""

    invoice_id: int | None
    label: str
    client: str
    scope: str
    period: str
    currency: str
    old: Decimal | None
    new: Decimal | None
    pending_old: int
    pending_new: int
    # The total the draft shows now, where it is stale and a rebuild alone would change it
    # (`old` is the total rebuilt without the file).
    shown: Decimal | None = None

    @property
    def delta(self) -> Decimal:
        return (self.new or Decimal(0)) - (self.old or Decimal(0))


@dataclass(frozen=True)
class CategoryChange:
    """An entry (not frozen) that saving the file would classify in another category."""

    entry_id: int
    client: str
    date: dt.date
    person: str
    notes: str
    old: str  # category name, or "" for none (pending, or bills nothing)
    new: str


@dataclass
class RulesFilePreview:
    """What `import_rules` would do with the file: its summary, the open drafts whose total
    moves, and the entries whose category changes. Computed by doing it and rolling back."""

    summary: ApplySummary
    invoices: list[InvoiceTotalChange] = field(default_factory=list)
    entries: list[CategoryChange] = field(default_factory=list)
    entries_changed: int = 0
    drafts_compared: int = 0

    @property
    def more_entries(self) -> int:
        return max(0, self.entries_changed - len(self.entries))

    def lines(self) -> list[str]:
        """The report `manage.py import_rules --dry-run` prints."""
        out = list(self.summary.lines())
        # The summary's last line says it was a dry run: it stays the report's last line.
        last = [out.pop()] if self.summary.dry_run else []
        if self.invoices:
            out.append(
                f"open invoices whose total would change ({len(self.invoices)} of "
                f"{self.drafts_compared} drafts):"
            )
            for change in self.invoices:
                old = "-" if change.old is None else f"{change.old}"
                new = "removed" if change.new is None else f"{change.new}"
                scope = f" / {change.scope}" if change.scope else ""
                out.append(
                    f"  {change.label} {change.client}{scope} {change.period}: {old} -> {new} "
                    f"{change.currency} (pending {change.pending_old} -> {change.pending_new})"
                    + (f"; stale, shows {change.shown} until rebuilt" if change.shown else "")
                )
        else:
            out.append(f"no open invoice's total would change ({self.drafts_compared} drafts)")
        if self.entries_changed:
            out.append(f"entries whose category would change: {self.entries_changed}")
            for entry in self.entries:
                out.append(
                    f"  {entry.date} {entry.client} {entry.person} {entry.notes!r}: "
                    f"{entry.old or '(none)'} -> {entry.new or '(none)'}"
                )
            if self.more_entries:
                out.append(f"  and {self.more_entries} more")
        else:
            out.append("no entry's category would change")
        return out + last


def preview_rules_file(*, text: str, prune: bool = False) -> RulesFilePreview:
    """Exactly what saving the rules file would do, without saving it: inside one transaction
    the real path runs (`import_rules`, which applies the file and re-classifies), then every
    open draft (every draft, of every period that has one) is redrafted, the totals and
    categories are compared with those before, and everything is rolled back. An invalid file
    raises `RulesFileInvalid` as the import does. Holds the import's lock while it runs."""
    with transaction.atomic():
        shown = _open_drafts()
        periods: dict[Period, set[int]] = defaultdict(set)
        for start, end, client_id, _ in shown:
            periods[Period(start, end)].add(client_id)
        # First as the drafts stand without the file (a stale draft rebuilt), so that the
        # comparison is the file's doing alone, not decisions made since the last rebuild.
        _redraft(periods)
        drafts_before, categories_before = _open_drafts(), _categories()
        summary = import_rules(text, prune=prune)
        _redraft(periods)
        drafts_after, categories_after = _open_drafts(), _categories()
        preview = RulesFilePreview(
            summary=summary,
            invoices=_total_changes(drafts_before, drafts_after, shown),
            drafts_compared=len(shown),
        )
        _category_changes(preview, categories_before, categories_after)
        transaction.set_rollback(True)
    summary.dry_run = True
    return preview


DraftKey = tuple[dt.date, dt.date, int, int | None]


def _redraft(periods: dict[Period, set[int]]) -> None:
    for period, client_ids in sorted(periods.items(), key=lambda item: item[0].start):
        draft_invoices(period=period, client_ids=sorted(client_ids))


def _open_drafts() -> dict[DraftKey, InvoiceTotalChange]:
    """Every draft by (period, client, project), as a change with only its current side."""
    drafts = Invoice.objects.filter(status=InvoiceStatus.DRAFT).select_related("client", "project")
    pending = dict(
        InvoiceEntry.objects.filter(invoice__in=drafts, state=InvoiceEntry.State.PENDING)
        .values("invoice_id")
        .annotate(n=Count("id"))
        .values_list("invoice_id", "n")
    )
    return {
        (d.period_start, d.period_end, d.client_id, d.project_id): InvoiceTotalChange(
            invoice_id=d.pk,
            label=d.label,
            client=d.client.name,
            scope=d.project.name if d.project else "",
            period=f"{d.period_start}..{d.period_end}",
            currency=d.currency,
            old=d.total,
            new=d.total,
            pending_old=pending.get(d.pk, 0),
            pending_new=pending.get(d.pk, 0),
        )
        for d in drafts
    }


def _total_changes(before: dict, after: dict, shown: dict) -> list[InvoiceTotalChange]:
    changes = []
    for key in sorted(set(before) | set(after), key=lambda k: (k[0], str(k[2]), k[3] or 0)):
        old, new = before.get(key), after.get(key)
        if old is not None and key in shown and shown[key].old != old.old:
            old = dataclasses.replace(old, shown=shown[key].old)
        if old is not None and new is not None:
            change = dataclasses.replace(old, new=new.new, pending_new=new.pending_new)
        elif old is not None:
            change = dataclasses.replace(old, new=None, pending_new=0)
        else:
            assert new is not None  # the key is in one of the two
            change = dataclasses.replace(new, invoice_id=None, old=None, pending_old=0)
        if (change.old, change.pending_old) != (change.new, change.pending_new):
            changes.append(change)
    return sorted(changes, key=lambda c: (c.period, c.client.casefold(), c.scope))


def _categories() -> dict[int, str]:
    """Each unfrozen entry's category name ("" for none)."""
    return {
        entry_id: name or ""
        for entry_id, name in Classification.objects.filter(entry__locked=False).values_list(
            "entry_id", "category__name"
        )
    }


def _category_changes(preview: RulesFilePreview, before: dict, after: dict) -> None:
    changed = sorted(pk for pk in set(before) | set(after) if before.get(pk) != after.get(pk))
    preview.entries_changed = len(changed)
    listed = TimeEntry.objects.filter(id__in=changed[:MAX_LISTED_ENTRIES]).select_related(
        "client", "person"
    )
    preview.entries = sorted(
        (
            CategoryChange(
                entry_id=e.id,
                client=e.client.name,
                date=e.date,
                person=e.person.name,
                notes=e.notes,
                old=before.get(e.id, ""),
                new=after.get(e.id, ""),
            )
            for e in listed
        ),
        key=lambda c: (c.client.casefold(), c.date, c.entry_id),
    )
