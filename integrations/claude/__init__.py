"""The Anthropic Messages API, for classifying time-entry notes (the language-model tier).

One small adapter: it builds the request in the shape the model accepts (structured outputs
with a JSON schema, else one tool with tool_choice auto: capabilities.py; the long stable
prefix marked for prompt caching; known-answer items mixed in), sends it through the official
`anthropic` SDK client built with explicit settings, and turns the answer into typed,
validated results. The answer is untrusted input: every item is checked here (known
reference, allowed category, well-formed description, confidence in 0..1; the known-answer
items right, else nothing of it is trusted), and a bad item is rejected with a readable
reason while the rest of the answer is kept. The model never sees or returns hours, dates,
rates or amounts.

It also wraps the Message Batches API (create, poll, fetch results) for large backfills.

Modules:

    capabilities.py  what each model accepts (forced tool choice, thinking, cache minimum, ...)
    prompt.py    what one request says: the instructions, the answer schema, the cached prefix
    answers.py   the answer checked item by item; token usage
    client.py    the SDK client, and its errors turned into the three callers handle
    batches.py   Message Batches: status, and the result lines checked like single answers

This package knows nothing of Django models: it imports neither `timesheets` nor `invoices`.
"""

from integrations.claude.answers import (
    REASON_CANARY,
    REASON_MALFORMED,
    REASON_MISSING,
    REASON_REASK,
    REASON_REFUSED,
    REASON_TRUNCATED,
    REASON_UNAVAILABLE,
    REASON_UNSURE,
    RETRYABLE_REASONS,
    ClassificationResult,
    ItemAnswer,
    ParsedAnswer,
    Usage,
    parse_message,
    parse_usage,
)
from integrations.claude.batches import BatchItemResult, BatchStatus
from integrations.claude.capabilities import (
    CAPABILITIES,
    ModelCapabilities,
    capabilities_of,
)
from integrations.claude.client import (
    ClaudeClassifier,
    ClaudeError,
    ClaudeSettings,
    ModelNotAuthorized,
    ModelRequestRejected,
    ModelUnavailable,
    translate_error,
)
from integrations.claude.prompt import (
    DESCRIPTION_MAX_CHARS,
    INSTRUCTIONS,
    NEEDS_REVIEW,
    NOTE_MAX_CHARS,
    TOOL_NAME,
    Canary,
    CategoryOption,
    ClassificationPrompt,
    Example,
    NoteItem,
    answer_schema,
    build_message_params,
    max_tokens_for,
    request_max_tokens,
    retry_max_tokens,
    tool_definition,
)

__all__ = [
    "CAPABILITIES",
    "DESCRIPTION_MAX_CHARS",
    "INSTRUCTIONS",
    "NEEDS_REVIEW",
    "NOTE_MAX_CHARS",
    "REASON_CANARY",
    "REASON_MALFORMED",
    "REASON_MISSING",
    "REASON_REASK",
    "REASON_REFUSED",
    "REASON_TRUNCATED",
    "REASON_UNAVAILABLE",
    "REASON_UNSURE",
    "RETRYABLE_REASONS",
    "TOOL_NAME",
    "BatchItemResult",
    "BatchStatus",
    "Canary",
    "CategoryOption",
    "ClassificationPrompt",
    "ClassificationResult",
    "ClaudeClassifier",
    "ClaudeError",
    "ClaudeSettings",
    "Example",
    "ItemAnswer",
    "ModelCapabilities",
    "ModelNotAuthorized",
    "ModelRequestRejected",
    "ModelUnavailable",
    "NoteItem",
    "ParsedAnswer",
    "Usage",
    "answer_schema",
    "build_message_params",
    "capabilities_of",
    "max_tokens_for",
    "parse_message",
    "parse_usage",
    "request_max_tokens",
    "retry_max_tokens",
    "tool_definition",
    "translate_error",
]
