"""The Claude model tier checked before go-live (`manage.py check_connections`): a key is set
and `CLASSIFIER_MODEL` is one the capability table knows; with `live`, one classification of
a fixed note with the configured model, which proves key, credit, model id and the request
shape that model accepts, all at once.

Reads the same Django settings as invoices.model_tier.model_settings (it cannot import the
app: integrations imports neither app). No key set: the tier is skipped, nothing to check."""

from __future__ import annotations

from django.conf import settings

from integrations.checks import CheckResult
from integrations.claude.capabilities import CAPABILITIES, capabilities_of
from integrations.claude.client import (
    ClaudeClassifier,
    ClaudeSettings,
    ModelNotAuthorized,
    ModelRequestRejected,
    ModelUnavailable,
)
from integrations.claude.prompt import CategoryOption, ClassificationPrompt, NoteItem

LABEL = "Claude"
FIXED_NOTE = NoteItem(ref="check-1", note="Fixed the bug in the invoice export")
CHECK_PROMPT = ClassificationPrompt(
    client_name="Connection check",
    categories=(
        CategoryOption(key="development", name="Development", billable=True),
        CategoryOption(key="meeting", name="Meeting", billable=True),
    ),
    items=(FIXED_NOTE,),
)


def check_claude(*, live: bool) -> list[CheckResult]:
    if not settings.ANTHROPIC_API_KEY:
        return []
    ok, detail = _outcome(live=live)
    return [CheckResult(LABEL, ok, detail)]


def _outcome(*, live: bool) -> tuple[bool, str]:
    model = settings.CLASSIFIER_MODEL
    if capabilities_of(model).model not in CAPABILITIES:
        return False, (
            f"CLASSIFIER_MODEL {model!r} is not in the capability table "
            "(integrations/claude/capabilities.py): the request shape it accepts is unknown; "
            "use a listed model or add it there"
        )
    if not live:
        return True, f"key set, model {model} known"
    classifier = ClaudeClassifier(
        ClaudeSettings(
            api_key=settings.ANTHROPIC_API_KEY,
            model=model,
            base_url=settings.ANTHROPIC_BASE_URL,
            max_retries=settings.ANTHROPIC_MAX_RETRIES,
            timeout_seconds=settings.ANTHROPIC_TIMEOUT,
        )
    )
    try:
        result = classifier.classify(CHECK_PROMPT)
    except ModelNotAuthorized as exc:
        return False, f"the key was refused or has no credit ({exc}); check ANTHROPIC_API_KEY"
    except ModelRequestRejected as exc:
        return False, (
            f"the API refused the request ({exc}): an unknown model id, or a request shape "
            f"{model} does not accept"
        )
    except ModelUnavailable as exc:
        return False, f"the API is unavailable or rate limited ({exc}); try again later"
    answer = result.answers.get(FIXED_NOTE.ref)
    if answer is None:
        why = result.rejections.get(FIXED_NOTE.ref) or result.canary_failure or "no answer"
        return False, f"{model} answered, but not usably ({why})"
    return True, f"{model} classified a fixed note as {answer.category or 'needs review'}"
