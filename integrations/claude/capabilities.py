"""What each model accepts, so every request has a shape that model does not refuse.

The figures are the published ones collected in api-notes section 5 (the "Per-model contract,
5.5 generation" table of 5.2, structured outputs in 5.5, caching in 5.4, models in 5.9) and the
model pages they cite (Anthropic's Sonnet 5.5 migration guide and what's-new pages, Opus 5.5
what's-new, Haiku 5.5 what's-new and overview). Where a figure is not published the entry says
so and the value chosen is the cautious one.

One request shape works everywhere it is supported: structured outputs (`output_config.format`
with a JSON schema), whose answer is a text block of JSON. A model without structured outputs
gets one tool with `tool_choice: auto` (forced tool choice returns HTTP 400 on Sonnet 5.5 and
Opus 5.5). No request ever carries sampling parameters (400 on API version 2026-10-21 for every
model), a thinking budget, `thinking: disabled`, or an assistant prefill: we never need them, so
no model can refuse a request of ours for them.

Thinking: where a model thinks by default (adaptive thinking), its thinking tokens count toward
`max_tokens`, so the budget gets `thinking_allowance` on top of what the answer needs. That
allowance is ours, not a published figure: enough for a classification at the model's default
effort, and `max_tokens` is a ceiling (only the tokens used are billed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelCapabilities:
    model: str
    forced_tool_choice: bool  # tool_choice "tool" / "any" accepted
    sampling_parameters: bool  # temperature / top_p / top_k accepted (never on 2026-10-21)
    structured_outputs: bool  # output_config.format accepted
    thinks_by_default: bool  # a request without a thinking field thinks (adaptive)
    thinking_counts_toward_max_tokens: bool
    thinking_can_be_disabled: bool  # thinking: {"type": "disabled"} accepted
    cache_min_tokens: int | None  # minimum cacheable prefix; None: not published
    max_output_tokens: int
    thinking_allowance: int = 0  # ours: tokens added to max_tokens for thinking
    source: str = ""

    @property
    def budget_for_thinking(self) -> int:
        """Tokens to add to max_tokens so that thinking cannot crowd the answer out."""
        if self.thinks_by_default and self.thinking_counts_toward_max_tokens:
            return self.thinking_allowance
        return 0


_FIVE_FIVE = "api-notes 5.2 per-model contract table (5.5 generation); the model's pages"

CAPABILITIES: dict[str, ModelCapabilities] = {
    c.model: c
    for c in (
        # Haiku 5.5: adaptive thinking at effort medium by default; "existing max_tokens values
        # still work, but thinking tokens count toward them"; 128K output; caches from 512.
        ModelCapabilities(
            "claude-haiku-5-5",
            forced_tool_choice=True,
            sampling_parameters=False,
            structured_outputs=True,
            thinks_by_default=True,
            thinking_counts_toward_max_tokens=True,
            thinking_can_be_disabled=True,
            cache_min_tokens=512,
            max_output_tokens=128_000,
            thinking_allowance=4096,
            source=_FIVE_FIVE,
        ),
        # Sonnet 5.5: adaptive thinking at effort high by default; forced tool choice, thinking
        # budgets, sampling parameters, assistant prefill and thinking: disabled return 400.
        ModelCapabilities(
            "claude-sonnet-5-5",
            forced_tool_choice=False,
            sampling_parameters=False,
            structured_outputs=True,
            thinks_by_default=True,
            thinking_counts_toward_max_tokens=True,
            thinking_can_be_disabled=False,
            cache_min_tokens=512,
            max_output_tokens=128_000,
            thinking_allowance=8192,
            source=_FIVE_FIVE,
        ),
        # Opus 5.5: adaptive thinking always on (effort medium); the cache minimum is not
        # published.
        ModelCapabilities(
            "claude-opus-5-5",
            forced_tool_choice=False,
            sampling_parameters=False,
            structured_outputs=True,
            thinks_by_default=True,
            thinking_counts_toward_max_tokens=True,
            thinking_can_be_disabled=False,
            cache_min_tokens=None,
            max_output_tokens=128_000,
            thinking_allowance=4096,
            source=_FIVE_FIVE,
        ),
        # Legacy 4.5 generation: no thinking unless asked for; structured outputs GA (5.5).
        ModelCapabilities(
            "claude-haiku-4-5",
            forced_tool_choice=True,
            sampling_parameters=False,
            structured_outputs=True,
            thinks_by_default=False,
            thinking_counts_toward_max_tokens=True,
            thinking_can_be_disabled=True,
            cache_min_tokens=4096,
            max_output_tokens=64_000,
            source="api-notes 5.5, 5.9; prompt-caching page",
        ),
        ModelCapabilities(
            "claude-sonnet-4-5",
            forced_tool_choice=True,
            sampling_parameters=False,
            structured_outputs=True,
            thinks_by_default=False,
            thinking_counts_toward_max_tokens=True,
            thinking_can_be_disabled=True,
            cache_min_tokens=1024,
            max_output_tokens=64_000,
            source="api-notes 5.5, 5.9; prompt-caching page",
        ),
    )
}

# A model id we have no figures for: the most cautious shape (one tool, tool_choice auto, room
# for thinking, a max_tokens every current model allows).
UNKNOWN = ModelCapabilities(
    "(unknown)",
    forced_tool_choice=False,
    sampling_parameters=False,
    structured_outputs=False,
    thinks_by_default=True,
    thinking_counts_toward_max_tokens=True,
    thinking_can_be_disabled=False,
    cache_min_tokens=None,
    max_output_tokens=32_000,
    thinking_allowance=8192,
    source="not published: the cautious defaults",
)


def capabilities_of(model: str) -> ModelCapabilities:
    """The capabilities of a model id, dated snapshots included (claude-haiku-4-5-20251001)."""
    found = CAPABILITIES.get(model) or CAPABILITIES.get(re.sub(r"-\d{8}$", "", model))
    if found is None:
        return ModelCapabilities(**{**UNKNOWN.__dict__, "model": model})
    return found
