"""Deciding an entry's category, wording and billable flag (billing semantics section 2).

Tiers, first that decides wins: manual, rules, memory, language model. The model's answer is
read from what the model tier stored; this module never calls it, it only judges the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

import re2

from invoices.core.errors import BillingError
from invoices.core.memory import AMBIGUOUS, ClientMemory
from invoices.core.policy import Policy


class Tier(StrEnum):
    """Which tier decided (section 2). The values are what `Classification.tier` stores;
    tests/test_structure.py keeps them in step with its choices. A StrEnum, so a member is
    its stored string (`Tier.RULE == "rule"`)."""

    MANUAL = "manual"
    RULE = "rule"
    MEMORY = "memory"
    LLM = "llm"
    NONE = ""


# The names the rest of the app imports.
TIER_MANUAL = Tier.MANUAL
TIER_RULE = Tier.RULE
TIER_MEMORY = Tier.MEMORY
TIER_LLM = Tier.LLM
TIER_NONE = Tier.NONE

DEFAULT_CONFIDENCE_THRESHOLD = Decimal("0.7")
ONE = Decimal(1)


@dataclass(frozen=True)
class CategoryInfo:
    key: str
    name: str
    billable: bool
    billing_code: str = ""


class NotesPatternRefused(BillingError, ValueError):
    """A rule's notes pattern that the rules' regex engine cannot run."""

    def __init__(self, pattern: str, reason: str, *, python_only: bool = False) -> None:
        self.pattern = pattern
        self.reason = reason
        # Python's `re` would take it: say what RE2 leaves out rather than only "invalid".
        hint = (
            " (rules run on RE2, a linear-time engine without backreferences, lookahead or "
            "lookbehind)"
            if python_only
            else ""
        )
        super().__init__(f"pattern '{pattern}' refused: {reason}{hint}")


_RE2_OPTIONS = re2.Options()
# The reason is returned to the caller; RE2 would also print every refused pattern to stderr.
_RE2_OPTIONS.log_errors = False


def compile_notes_pattern(pattern: str) -> Any:
    """A rule's `notes_regex`, compiled for matching (the only place rules' patterns are
    compiled: the rules file, the admin and classification all call this).

    RE2 matches in time linear in the length of the notes, whatever the pattern: a pattern
    such as `(a+)+$` would take Python's backtracking `re` minutes on one 30-character note,
    and notes come from outside (trackers, CSV files). The price is RE2's syntax: no
    backreferences or lookaround, and `\\b`, `\\w`, `\\d`, `\\s` are ASCII-only.
    """
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise NotesPatternRefused(
            pattern,
            reason or "not a valid regular expression",
            python_only=_python_compiles(pattern),
        ) from None


def _python_compiles(pattern: str) -> bool:
    # Compiling only, never matching: compilation is linear in the pattern's length.
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


@dataclass(frozen=True)
class Rule:
    id: int
    category: str
    priority: int = 100
    client: int | None = None
    task: str = ""
    # Compiled by `compile_notes_pattern` (an RE2 pattern object: `.search(text)`).
    notes_regex: Any = None
    project: int | None = None

    def matches(self, entry: EntryFacts) -> bool:
        """Every matcher the rule sets must match (a rule sets at least one)."""
        if self.task and entry.task.casefold() != self.task.casefold():
            return False
        if self.project is not None and entry.project != self.project:
            return False
        if self.notes_regex is not None and not self.notes_regex.search(entry.notes):
            return False
        return True


def order_rules(rules: Iterable[Rule], client: int) -> list[Rule]:
    """The client's own rules first, then firm-wide ones, each by priority then id."""
    own = sorted((r for r in rules if r.client == client), key=lambda r: (r.priority, r.id))
    firm = sorted((r for r in rules if r.client is None), key=lambda r: (r.priority, r.id))
    return own + firm


@dataclass(frozen=True)
class EntryFacts:
    id: int
    client: int
    project: int
    project_billable: bool
    task: str
    notes: str
    normalized_notes: str
    tracker_billable: bool


@dataclass(frozen=True)
class ManualDecision:
    category: str | None = None
    billable: bool | None = None
    description: str = ""


@dataclass(frozen=True)
class ModelAnswer:
    """The model tier's stored answer; `category` is None when it abstained (see `note`)."""

    category: str | None
    description: str = ""
    confidence: Decimal | None = None
    note: str = ""


def build_memory(approved: Iterable[tuple[str, str]]) -> dict[str, str]:
    """normalized notes -> category from approved entries; disagreeing history is AMBIGUOUS
    (`invoices.core.memory.build_client_memory` adds reviewers' decisions and similar notes).
    """
    memory: dict[str, str] = {}
    for notes, category in approved:
        if not notes:
            continue
        seen = memory.get(notes)
        memory[notes] = category if seen in (None, category) else AMBIGUOUS
    return memory


@dataclass(frozen=True)
class Decision:
    category: str | None
    description: str
    tier: Tier
    rule_id: int | None
    confidence: Decimal | None
    billable: bool
    billing_code: str
    needs_review: bool
    reason: str
    # Similar memory (section 2.3): the decided note this entry's note matched.
    memory_note: str = ""

    @classmethod
    def bills_nothing(cls, *, description: str, tier: Tier) -> Decision:
        """No category, and none is needed: the entry bills nothing whatever its category."""
        return cls(
            category=None,
            description=description,
            tier=tier,
            rule_id=None,
            confidence=None,
            billable=False,
            billing_code="",
            needs_review=False,
            reason="",
        )

    @classmethod
    def needs_category(cls, *, description: str, billable: bool, reason: str) -> Decision:
        """No tier decided a category: pending for a reviewer, told why."""
        return cls(
            category=None,
            description=description,
            tier=TIER_NONE,
            rule_id=None,
            confidence=None,
            billable=billable,
            billing_code="",
            needs_review=True,
            reason=reason,
        )


@dataclass(frozen=True)
class _Choice:
    """What the tiers chose for an entry, before its category is looked up and its billable
    flag settled. `category` None: no tier decided, and `reason` says why."""

    category: str | None = None
    tier: Tier = TIER_NONE
    rule_id: int | None = None
    confidence: Decimal | None = None
    reason: str = ""
    # The model's wording, when the model decided.
    description: str = ""
    memory_note: str = ""
    memory_label: str = ""


_UNDECIDED = _Choice()


def classify(
    entry: EntryFacts,
    *,
    policy: Policy,
    categories: Mapping[str, CategoryInfo],
    rules: Sequence[Rule],
    memory: Mapping[str, str],
    manual: ManualDecision | None = None,
    model: ModelAnswer | None = None,
    model_reason: str = "no rule or approved history matched",
    threshold: Decimal = DEFAULT_CONFIDENCE_THRESHOLD,
) -> Decision:
    """Decide one entry. `rules` must already be in order (see `order_rules`).

    `memory` holds the client's decided notes (tier 3); a `ClientMemory` with `similar` set
    also decides notes similar to them (`invoices.core.memory`).

    `model_reason` is what an undecided entry is told when there is no model answer: the
    caller knows whether the model tier is configured, pending, or failed.
    """
    manual = manual or ManualDecision()
    choice = _choose_category(
        entry,
        manual=manual,
        rules=rules,
        memory=memory,
        model=model,
        categories=categories,
        threshold=threshold,
        model_reason=model_reason,
    )
    description = _description(entry, manual, choice)
    info = categories.get(choice.category) if choice.category else None
    if choice.category and info is None:
        # A category deleted from configuration: never bill against a name we cannot show.
        choice = _Choice(reason="its category no longer exists")
    if info is None:
        return _without_category(entry, manual, description=description, reason=choice.reason)
    return _with_category(entry, manual, info, choice, policy=policy, description=description)


def _choose_category(
    entry: EntryFacts,
    *,
    manual: ManualDecision,
    rules: Sequence[Rule],
    memory: Mapping[str, str],
    model: ModelAnswer | None,
    categories: Mapping[str, CategoryInfo],
    threshold: Decimal,
    model_reason: str,
) -> _Choice:
    """The tiers in order, first that decides wins: manual, rules, memory, language model."""
    if manual.category:
        return _Choice(category=manual.category, tier=TIER_MANUAL, confidence=ONE)
    rule = _first_matching_rule(entry, rules)
    if rule is not None:
        return _Choice(category=rule.category, tier=TIER_RULE, rule_id=rule.id, confidence=ONE)
    remembered = _exact_memory(entry, memory)
    if remembered is not None:
        return remembered
    similar = _similar_memory(entry, memory)
    if similar.category is not None:
        return similar
    return _model_choice(model, categories, threshold, model_reason, similar_reason=similar.reason)


def _first_matching_rule(entry: EntryFacts, rules: Sequence[Rule]) -> Rule | None:
    return next((rule for rule in rules if rule.matches(entry)), None)


def _exact_memory(entry: EntryFacts, memory: Mapping[str, str]) -> _Choice | None:
    """The category decided before for the same note; a refusal when that history disagrees
    (which the model does not overrule); None when the note was never decided."""
    remembered = memory.get(entry.normalized_notes) if entry.normalized_notes else None
    if remembered == AMBIGUOUS:
        return _Choice(reason="approved history for this note disagrees on the category")
    if remembered is not None:
        return _Choice(category=remembered, tier=TIER_MEMORY, confidence=ONE)
    return None


def _similar_memory(entry: EntryFacts, memory: Mapping[str, str]) -> _Choice:
    """The category of a decided note similar to this one (section 2.3), when memory has
    similar matching on; undecided otherwise, with why when near notes disagree."""
    similar = memory.similar if isinstance(memory, ClientMemory) else None
    if similar is None or not entry.normalized_notes:
        return _UNDECIDED
    outcome = similar.match(entry.notes)
    if outcome.category is None:
        return _Choice(reason=outcome.reason)
    return _Choice(
        category=outcome.category,
        tier=TIER_MEMORY,
        confidence=outcome.score,
        memory_note=outcome.notes,
        memory_label=outcome.label,
    )


def _model_choice(
    model: ModelAnswer | None,
    categories: Mapping[str, CategoryInfo],
    threshold: Decimal,
    model_reason: str,
    *,
    similar_reason: str,
) -> _Choice:
    reason, category = _judge_model(model, categories, threshold, model_reason)
    if category is None:
        # Near notes that disagree do not decide; the model still may, and if it does not,
        # the reviewer is told about both.
        return _Choice(reason=f"{similar_reason}; {reason}" if similar_reason else reason)
    assert model is not None  # _judge_model chooses a category only from an answer
    return _Choice(
        category=category,
        tier=TIER_LLM,
        confidence=model.confidence,
        description=model.description.strip(),
    )


def _description(entry: EntryFacts, manual: ManualDecision, choice: _Choice) -> str:
    """The reviewer's wording, else the model's, else the entry's own notes."""
    return manual.description.strip() or choice.description or entry.notes.strip()


def _without_category(
    entry: EntryFacts, manual: ManualDecision, *, description: str, reason: str
) -> Decision:
    inherently_free = not entry.tracker_billable or not entry.project_billable
    if manual.billable is False or (inherently_free and manual.billable is None):
        # Bills nothing whatever its category: never pending for want of one.
        tier = TIER_MANUAL if manual.billable is False else TIER_NONE
        return Decision.bills_nothing(description=description, tier=tier)
    return Decision.needs_category(
        description=description,
        billable=bool(manual.billable) and not inherently_free,
        reason=f"no category: {reason}",
    )


def _with_category(
    entry: EntryFacts,
    manual: ManualDecision,
    info: CategoryInfo,
    choice: _Choice,
    *,
    policy: Policy,
    description: str,
) -> Decision:
    billable, choice = _settle_billable(entry, manual, info, choice, policy)
    code = policy.billing_codes.get(info.key) or info.billing_code
    if billable and policy.require_billing_codes and not code:
        code, needs_review = "", True
        reason = f"no billing code for category '{info.key}' (the client requires one)"
    else:
        # A decided entry's reason is empty, except that similar memory says what it matched.
        needs_review, reason = False, choice.memory_label
    return Decision(
        category=info.key,
        description=description,
        tier=choice.tier,
        rule_id=choice.rule_id,
        confidence=choice.confidence,
        billable=billable,
        billing_code=code,
        needs_review=needs_review,
        reason=reason,
        memory_note=choice.memory_note,
    )


def _settle_billable(
    entry: EntryFacts, manual: ManualDecision, info: CategoryInfo, choice: _Choice, policy: Policy
) -> tuple[bool, _Choice]:
    """(billable, choice): the reviewer's flag when they set one, else the category's default.
    A reviewer's flag that differs from the default makes the decision theirs."""
    default = _default_billable(entry, info, policy)
    if manual.billable is None:
        return default, choice
    if choice.tier != TIER_MANUAL and manual.billable != default:
        choice = replace(choice, tier=TIER_MANUAL, confidence=ONE, memory_note="", memory_label="")
    return manual.billable, choice


def _default_billable(entry: EntryFacts, info: CategoryInfo, policy: Policy) -> bool:
    return (
        entry.tracker_billable
        and entry.project_billable
        and info.billable
        and info.key not in policy.non_billable_categories
    )


def _judge_model(
    model: ModelAnswer | None,
    categories: Mapping[str, CategoryInfo],
    threshold: Decimal,
    model_reason: str,
) -> tuple[str, str | None]:
    """(reason, category): the model's category when its answer may decide, else why not."""
    if model is None:
        return model_reason, None
    if model.category is None:
        return f"model abstained: {model.note or 'no answer'}", None
    if model.category not in categories:
        return f"model chose '{model.category}', which is not an allowed category", None
    if model.confidence is None or model.confidence < threshold:
        return (f"model confidence {model.confidence} is below the threshold {threshold}", None)
    return "", model.category
