"""The official `anthropic` SDK client, built with explicit settings, and every way a request
fails turned into one of three errors callers handle."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from integrations.claude.answers import (
    REASON_MALFORMED,
    ClassificationResult,
    ParsedAnswer,
    Usage,
    loads_json,
    parse_message,
)
from integrations.claude.batches import BatchItemResult, BatchStatus, parse_batch_results
from integrations.claude.capabilities import capabilities_of
from integrations.claude.prompt import (
    ClassificationPrompt,
    build_message_params,
    retry_max_tokens,
)
from integrations.errors import IntegrationError

if TYPE_CHECKING:
    import anthropic


def _sdk():
    """The SDK, imported on first use: importing it costs over a second, which every management
    command and web process would otherwise pay at start-up, model or not."""
    import anthropic

    return anthropic


# --- Errors ------------------------------------------------------------------------------


class ClaudeError(IntegrationError):
    """A request to the model failed as a whole; the message says why (integrations.errors:
    one base per layer)."""


class ModelUnavailable(ClaudeError):
    """Rate limited, overloaded, a server error or a timeout, after the SDK's own retries
    (which honour retry-after). A later run may succeed."""

    retryable = True


class ModelNotAuthorized(ClaudeError):
    """The key is wrong, lacks permission or credit (401, 402, 403): every request would
    fail the same way until someone fixes the configuration."""


class ModelRequestRejected(ClaudeError):
    """The API refused the request itself (400, 404, 413, 422): a bug or a configuration
    error such as an unknown model id."""


# --- The client --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaudeSettings:
    api_key: str
    model: str
    base_url: str = "https://api.anthropic.com"
    max_retries: int = 2
    timeout_seconds: int = 60


class ClaudeClassifier:
    """Sends classification prompts through the official SDK client."""

    def __init__(self, config: ClaudeSettings) -> None:
        self.config = config
        # Every option explicit: no developer profile or environment variable leaks in.
        self._client = _sdk().Anthropic(
            api_key=config.api_key,
            base_url=config.base_url,
            max_retries=config.max_retries,
            timeout=config.timeout_seconds,
        )

    def classify(self, prompt: ClassificationPrompt) -> ClassificationResult:
        """One request. Raises ModelUnavailable, ModelNotAuthorized or ModelRequestRejected
        when there is no answer at all; a bad answer is a result with rejections.

        An answer cut off at max_tokens (thinking counts toward it on models that think by
        default) is asked once more with a larger budget; cut off again, its items are
        rejected as truncated. Both calls' tokens are counted."""
        caps = capabilities_of(self.config.model)
        params = build_message_params(prompt, model=self.config.model)
        started = time.monotonic()
        parsed, attempts = self._ask(params, prompt)
        larger = retry_max_tokens(params["max_tokens"], caps)
        if parsed.stop_reason == "max_tokens" and larger is not None:
            first = parsed
            parsed, more = self._ask({**params, "max_tokens": larger}, prompt)
            parsed = replace(parsed, usage=first.usage + parsed.usage)
            attempts += more
        return ClassificationResult(
            **{f: getattr(parsed, f) for f in ParsedAnswer.__dataclass_fields__},
            latency_ms=int((time.monotonic() - started) * 1000),
            attempts=attempts,
        )

    def _ask(
        self, params: Mapping[str, object], prompt: ClassificationPrompt
    ) -> tuple[ParsedAnswer, int]:
        """One call (with the SDK's retries): the parsed answer and the attempts it took."""
        try:
            raw = self._client.messages.with_raw_response.create(**params)
            content = raw.http_response.content
        except _sdk().AnthropicError as exc:
            raise translate_error(exc) from exc
        try:
            body = loads_json(content)
        except ValueError:
            body = None
        if isinstance(body, Mapping):
            parsed = parse_message(body, prompt)
        else:
            reason = f"{REASON_MALFORMED}: the response is not a JSON object"
            parsed = ParsedAnswer({}, {r: reason for r in prompt.asked_refs}, (), Usage(), "")
        return parsed, raw.retries_taken + 1

    # Message Batches API (50% cheaper; results within 24 hours).

    def create_batch(self, requests: Iterable[tuple[str, ClassificationPrompt]]) -> str:
        """Submit (custom_id, prompt) pairs; returns the batch id."""
        body = [
            {"custom_id": custom_id, "params": build_message_params(p, model=self.config.model)}
            for custom_id, p in requests
        ]
        try:
            return self._client.messages.batches.create(requests=body).id
        except _sdk().AnthropicError as exc:
            raise translate_error(exc) from exc

    def batch_status(self, batch_id: str) -> BatchStatus:
        try:
            batch = self._client.messages.batches.retrieve(batch_id)
        except _sdk().AnthropicError as exc:
            raise translate_error(exc) from exc
        counts = batch.request_counts
        return BatchStatus(
            id=batch.id,
            processing_status=batch.processing_status,
            succeeded=counts.succeeded,
            errored=counts.errored,
            expired=counts.expired,
            canceled=counts.canceled,
            processing=counts.processing,
        )

    def wait_for_batch(
        self, batch_id: str, *, poll_seconds: float, sleep=time.sleep, on_poll=None
    ) -> BatchStatus:
        """Poll until the batch has ended (the API ends every batch within 24 hours)."""
        while True:
            status = self.batch_status(batch_id)
            if on_poll is not None:
                on_poll(status)
            if status.ended:
                return status
            sleep(poll_seconds)

    def batch_results(
        self, batch_id: str, prompts: Mapping[str, ClassificationPrompt]
    ) -> list[BatchItemResult]:
        """Every result line of an ended batch, validated like a single answer. Lines come in
        no particular order; they are matched on custom_id."""
        try:
            raw = self._client.messages.batches.with_raw_response.results(batch_id)
            content = raw.http_response.read()
        except _sdk().AnthropicError as exc:
            raise translate_error(exc) from exc
        return parse_batch_results(content, prompts)


def translate_error(exc: anthropic.AnthropicError) -> ClaudeError:
    """SDK errors -> the three errors callers handle. Retries already happened in the SDK."""
    sdk = _sdk()
    if isinstance(exc, sdk.APITimeoutError):
        return ModelUnavailable("the request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return ModelUnavailable("could not connect to the API")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        detail = f"HTTP {status}: {exc.api_message or exc.message}"[:300]
        if status in (401, 402, 403):
            return ModelNotAuthorized(detail)
        if status in (408, 409, 429) or status >= 500:
            return ModelUnavailable(detail)
        return ModelRequestRejected(detail)
    return ModelUnavailable(f"{type(exc).__name__}: {exc}"[:300])
