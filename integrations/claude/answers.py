"""The model's answer, checked against what was asked. The answer is untrusted input: every
item is validated (known reference, allowed category, well-formed description, confidence in
0..1); a bad item is rejected with a readable reason while the rest of the answer is kept."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from integrations.claude.prompt import (
    DESCRIPTION_MAX_CHARS,
    NEEDS_REVIEW,
    TOOL_NAME,
    ClassificationPrompt,
    clean_line,
)

# Readable reasons stored for reviewers (Classification.model_note). The model tier re-asks
# entries whose answer failed for a reason in `RETRYABLE_REASONS` (a problem of the answer,
# not a judgement about the entry) on its next run.
REASON_UNAVAILABLE = "model unavailable"
REASON_TRUNCATED = "answer cut off (the model reached max_tokens)"
REASON_MALFORMED = "answer malformed"
REASON_MISSING = "missing from the model's answer"
REASON_REFUSED = "the model refused to answer"
REASON_UNSURE = "the model was unsure which category applies"
RETRYABLE_REASONS = (REASON_UNAVAILABLE, REASON_TRUNCATED, REASON_MALFORMED, REASON_MISSING)


# --- Outputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token, cached or not (`input_tokens` excludes the cached ones)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class ItemAnswer:
    """A validated answer for one reference. `category` is None when the model said
    needs_review; `note` then says so."""

    ref: str
    category: str | None
    description: str
    confidence: Decimal
    note: str = ""


@dataclass(frozen=True)
class ParsedAnswer:
    answers: dict[str, ItemAnswer]
    rejections: dict[str, str]
    unknown_refs: tuple[str, ...]
    usage: Usage
    stop_reason: str
    message_id: str = ""

    @property
    def status(self) -> str:
        """ok (every item answered), partial (some rejected) or invalid (none usable)."""
        if not self.rejections:
            return "ok"
        return "partial" if self.answers else "invalid"


@dataclass(frozen=True)
class ClassificationResult(ParsedAnswer):
    latency_ms: int = 0
    attempts: int = 1


# --- The answer --------------------------------------------------------------------------


def parse_message(body: Mapping[str, Any], prompt: ClassificationPrompt) -> ParsedAnswer:
    """Validate a Messages API response body (JSON numbers read as Decimal) against what was
    asked. Never raises for a bad answer: bad items become rejections with a reason."""
    refs = [item.ref for item in prompt.items]
    usage = parse_usage(body.get("usage"))
    stop = str(body.get("stop_reason") or "")
    message_id = str(body.get("id") or "")

    def everything(reason: str) -> ParsedAnswer:
        return ParsedAnswer({}, {ref: reason for ref in refs}, (), usage, stop, message_id)

    if stop == "refusal":
        return everything(REASON_REFUSED)
    if stop == "max_tokens":
        # A cut-off tool call may end in a half-written item: trust none of it.
        return everything(REASON_TRUNCATED)
    content = body.get("content")
    calls = [
        block
        for block in (content if isinstance(content, list) else [])
        if isinstance(block, Mapping)
        and block.get("type") == "tool_use"
        and block.get("name") == TOOL_NAME
    ]
    if len(calls) != 1:
        return everything(f"{REASON_MALFORMED}: expected one {TOOL_NAME} call, got {len(calls)}")
    payload = calls[0].get("input")
    items = payload.get("items") if isinstance(payload, Mapping) else None
    if not isinstance(items, list):
        return everything(f"{REASON_MALFORMED}: no list of items")

    allowed = prompt.allowed
    expected = set(refs)
    seen: dict[str, Any] = {}
    duplicated: set[str] = set()
    unknown: list[str] = []
    for raw in items:
        ref = raw.get("entry_ref") if isinstance(raw, Mapping) else None
        if not isinstance(ref, str):
            unknown.append("(no entry_ref)")
            continue
        if ref not in expected:
            unknown.append(ref[:64])
            continue
        if ref in seen:
            duplicated.add(ref)
        seen[ref] = raw

    answers: dict[str, ItemAnswer] = {}
    rejections: dict[str, str] = {}
    for ref in refs:
        if ref in duplicated:
            rejections[ref] = f"{REASON_MALFORMED}: the entry was answered twice"
        elif ref not in seen:
            rejections[ref] = REASON_MISSING
        else:
            outcome = _validate_item(ref, seen[ref], allowed)
            if isinstance(outcome, ItemAnswer):
                answers[ref] = outcome
            else:
                rejections[ref] = outcome
    return ParsedAnswer(answers, rejections, tuple(unknown), usage, stop, message_id)


def _validate_item(ref: str, raw: Mapping[str, Any], allowed: frozenset[str]) -> ItemAnswer | str:
    """An ItemAnswer, or the reason the item is rejected. Fields other than the four asked
    for (an answer that "sets hours", say) are never read."""
    category = raw.get("category")
    description = raw.get("description")
    confidence = _decimal(raw.get("confidence"))
    if not isinstance(category, str):
        return f"{REASON_MALFORMED}: no category"
    if not isinstance(description, str):
        return f"{REASON_MALFORMED}: no description"
    if confidence is None:
        return f"{REASON_MALFORMED}: confidence is not a number"
    if not Decimal(0) <= confidence <= Decimal(1):
        return f"{REASON_MALFORMED}: confidence {confidence} is outside 0..1"
    cleaned = clean_line(description, DESCRIPTION_MAX_CHARS + 1)
    if len(cleaned) > DESCRIPTION_MAX_CHARS:
        return f"{REASON_MALFORMED}: description longer than {DESCRIPTION_MAX_CHARS} characters"
    if category == NEEDS_REVIEW:
        return ItemAnswer(ref, None, cleaned, confidence, REASON_UNSURE)
    if category not in allowed:
        return f"the model chose '{clean_line(category, 60)}', which is not an allowed category"
    return ItemAnswer(ref, category, cleaned, confidence)


def _decimal(value: Any) -> Decimal | None:
    # JSON numbers arrive as Decimal (parse_float=Decimal) or int; bool is not a number here.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def parse_usage(raw: Any) -> Usage:
    """The usage block; the cache fields may be null or missing."""
    if not isinstance(raw, Mapping):
        return Usage()

    def count(name: str) -> int:
        value = raw.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_read_tokens=count("cache_read_input_tokens"),
        cache_write_tokens=count("cache_creation_input_tokens"),
    )


def loads_json(content: bytes) -> Any:
    return json.loads(content, parse_float=Decimal)
