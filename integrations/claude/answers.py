"""The model's answer, checked against what was asked. The answer is untrusted input: every
item is validated (known reference, allowed category, well-formed description, confidence in
0..1); a bad item is rejected with a readable reason while the rest of the answer is kept.

The known-answer items (`ClassificationPrompt.canaries`) are checked first: when one comes back
wrong (or not at all), something in the request steered the model, and no item of that answer
is trusted (OWASP LLM01)."""

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
# A lone note whose request failed the known-answer check: the note itself steered the model
# (or the model is broken); a reviewer decides, it is not asked again.
REASON_CANARY = "the answer failed the known-answer check (the note may carry instructions)"
# A shared request failed the check: its notes are asked again one by one (by this run, or by
# the next if this one stops first).
REASON_REASK = "the request failed the known-answer check; its notes are asked one by one"
RETRYABLE_REASONS = (
    REASON_UNAVAILABLE,
    REASON_TRUNCATED,
    REASON_MALFORMED,
    REASON_MISSING,
    REASON_REASK,
)


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
    # Why the known-answer check failed ("" when it passed, or the request had none).
    canary_failure: str = ""

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
    asked. Never raises for a bad answer: bad items become rejections with a reason.

    The answer is the input of the one record_classifications call, or else the JSON object
    in the text blocks (structured outputs, or a model that answered a tool_choice auto
    request in text). Thinking blocks and other content are skipped."""
    refs = list(prompt.asked_refs)
    usage = parse_usage(body.get("usage"))
    stop = str(body.get("stop_reason") or "")
    message_id = str(body.get("id") or "")

    def everything(reason: str, canary_failure: str = "") -> ParsedAnswer:
        rejected = {ref: reason for ref in refs}
        return ParsedAnswer({}, rejected, (), usage, stop, message_id, canary_failure)

    if stop == "refusal":
        return everything(REASON_REFUSED)
    if stop == "max_tokens":
        # A cut-off answer may end in a half-written item: trust none of it.
        return everything(REASON_TRUNCATED)
    items = _answer_items(body.get("content"))
    if isinstance(items, str):
        return everything(f"{REASON_MALFORMED}: {items}")

    allowed = prompt.allowed
    expected = {item.ref for item in prompt.items}
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

    failure = _canary_failure(prompt, seen, duplicated)
    if failure:
        return everything(REASON_CANARY, failure)

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


def _answer_items(content: Any) -> list[Any] | str:
    """The answer's list of items, or what is wrong with the answer."""
    blocks = [b for b in (content if isinstance(content, list) else []) if isinstance(b, Mapping)]
    calls = [b for b in blocks if b.get("type") == "tool_use" and b.get("name") == TOOL_NAME]
    texts = [b.get("text") for b in blocks if b.get("type") == "text"]
    if calls:
        if len(calls) != 1:
            return f"expected one {TOOL_NAME} call, got {len(calls)}"
        payload = calls[0].get("input")
    elif texts and all(isinstance(t, str) for t in texts):
        try:
            payload = loads_json("".join(texts))
        except ValueError:
            return "the answer is not the JSON object asked for"
    else:
        return f"expected one {TOOL_NAME} call or a JSON answer, got neither"
    items = payload.get("items") if isinstance(payload, Mapping) else None
    if not isinstance(items, list):
        return "no list of items"
    return items


def _canary_failure(
    prompt: ClassificationPrompt, seen: Mapping[str, Any], duplicated: set[str]
) -> str:
    """Why the known-answer items show the answer cannot be trusted, or ""."""
    for canary in prompt.canaries:
        raw = seen.get(canary.ref)
        got = raw.get("category") if isinstance(raw, Mapping) else None
        if canary.ref in duplicated:
            return "a known-answer item was answered twice"
        if raw is None:
            return "a known-answer item was not answered"
        if got != canary.category:
            return (
                f"a known-answer item came back as '{clean_line(str(got), 60)}', "
                f"not '{canary.category}'"
            )
    return ""


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
