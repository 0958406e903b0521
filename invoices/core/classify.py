"""Deciding an entry's category, wording and billable flag (billing semantics section 2).

Tiers, first that decides wins: manual, rules, memory, language model. The model's answer is
read from what the model tier stored; this module never calls it, it only judges the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import re2

from invoices.core.memory import AMBIGUOUS, ClientMemory
from invoices.core.policy import Policy

TIER_MANUAL = "manual"
TIER_RULE = "rule"
TIER_MEMORY = "memory"
TIER_LLM = "llm"
TIER_NONE = ""

DEFAULT_CONFIDENCE_THRESHOLD = Decimal("0.7")
ONE = Decimal(1)


@dataclass(frozen=True)
class CategoryInfo:
    key: str
    name: str
    billable: bool
    billing_code: str = ""


class NotesPatternRefused(ValueError):
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
    tier: str
    rule_id: int | None
    confidence: Decimal | None
    billable: bool
    billing_code: str
    needs_review: bool
    reason: str
    # Similar memory (section 2.3): the decided note this entry's note matched.
    memory_note: str = ""


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
    category, tier, rule_id, confidence = None, TIER_NONE, None, None
    description = ""
    reason = ""
    memory_note, memory_label, similar_reason = "", "", ""

    if manual.category:
        category, tier, confidence = manual.category, TIER_MANUAL, ONE
    if category is None:
        for rule in rules:
            if rule.matches(entry):
                category, tier, rule_id, confidence = rule.category, TIER_RULE, rule.id, ONE
                break
    if category is None:
        remembered = memory.get(entry.normalized_notes) if entry.normalized_notes else None
        similar = memory.similar if isinstance(memory, ClientMemory) else None
        if remembered == AMBIGUOUS:
            reason = "approved history for this note disagrees on the category"
        elif remembered is not None:
            category, tier, confidence = remembered, TIER_MEMORY, ONE
        elif similar is not None and entry.normalized_notes:
            outcome = similar.match(entry.notes)
            if outcome.category is not None:
                category, tier, confidence = outcome.category, TIER_MEMORY, outcome.score
                memory_note, memory_label = outcome.notes, outcome.label
            similar_reason = outcome.reason
    if category is None and not reason:
        reason, model_choice = _judge_model(model, categories, threshold, model_reason)
        # Near notes that disagree do not decide; the model still may, and if it does not,
        # the reviewer is told about both.
        if similar_reason and model_choice is None:
            reason = f"{similar_reason}; {reason}"
        if model_choice is not None:
            category, tier, confidence = model_choice, TIER_LLM, model.confidence
            description = model.description.strip()
    if manual.description.strip():
        description = manual.description.strip()
    if not description:
        description = entry.notes.strip()

    inherently_free = not entry.tracker_billable or not entry.project_billable
    info = categories.get(category) if category else None
    if category and info is None:
        # A category deleted from configuration: never bill against a name we cannot show.
        category, tier, rule_id, confidence = None, TIER_NONE, None, None
        reason = "its category no longer exists"
        memory_note, memory_label = "", ""

    if info is None:
        billable = bool(manual.billable) and not inherently_free
        if manual.billable is False or (inherently_free and manual.billable is None):
            # Bills nothing whatever its category: never pending for want of one.
            return Decision(
                None,
                description,
                TIER_MANUAL if manual.billable is False else TIER_NONE,
                None,
                None,
                False,
                "",
                False,
                "",
            )
        return Decision(
            None, description, TIER_NONE, None, None, billable, "", True, f"no category: {reason}"
        )

    if manual.billable is not None:
        billable = manual.billable
        if tier != TIER_MANUAL and manual.billable != _default_billable(entry, info, policy):
            tier, confidence = TIER_MANUAL, ONE
            memory_note, memory_label = "", ""
    else:
        billable = _default_billable(entry, info, policy)

    code = policy.billing_codes.get(info.key) or info.billing_code
    if billable and policy.require_billing_codes and not code:
        return Decision(
            info.key,
            description,
            tier,
            rule_id,
            confidence,
            billable,
            "",
            True,
            f"no billing code for category '{info.key}' (the client requires one)",
            memory_note,
        )
    # A decided entry's reason is empty, except that similar memory says what it matched.
    return Decision(
        info.key,
        description,
        tier,
        rule_id,
        confidence,
        billable,
        code,
        False,
        memory_label,
        memory_note,
    )


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
