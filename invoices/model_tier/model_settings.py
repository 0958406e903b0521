"""Whether a model is configured, and the adapter's settings from Django's."""

from __future__ import annotations

from django.conf import settings

from integrations.claude import ClaudeSettings


def model_configured() -> bool:
    return bool(settings.ANTHROPIC_API_KEY)


def claude_settings() -> ClaudeSettings:
    return ClaudeSettings(
        api_key=settings.ANTHROPIC_API_KEY,
        model=settings.CLASSIFIER_MODEL,
        base_url=settings.ANTHROPIC_BASE_URL,
        max_retries=settings.ANTHROPIC_MAX_RETRIES,
        timeout_seconds=settings.ANTHROPIC_TIMEOUT,
    )
