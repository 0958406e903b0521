"""Deploy checks of our own, run by `manage.py check --deploy` (and so by the release step)."""

from __future__ import annotations

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

# The fixed key settings.py falls back to with DEBUG on: public, in the repository.
DEVELOPMENT_KEY = "ZGV2ZWxvcG1lbnQtb25seS1rZXktbm90LWZvci11c2U="


# Django's own marker for keys that startproject generates for local use.
INSECURE_KEY_PREFIX = "django-insecure-"
SECRET_KEY_HINT = (
    'Set SECRET_KEY to 50+ random characters: python -c "import secrets; '
    'print(secrets.token_urlsafe(50))" (docs/deployment.md). The development key is for DEBUG on.'
)


def public_secret_key_problem() -> str | None:
    """Why the signing keys are unfit to run on with DEBUG off, or None.

    Anyone who knows a key that signs sessions can forge a staff login: the key must not be
    missing, the public development key of settings.py, or a `django-insecure-` one, and
    neither may any SECRET_KEY_FALLBACKS entry (a fallback still validates sessions).
    """
    if settings.DEBUG:
        return None
    public = getattr(settings, "DEVELOPMENT_SECRET_KEY", None)
    key = str(getattr(settings, "SECRET_KEY", "") or "")
    if key == public or not key.strip():
        return (
            "SECRET_KEY is not set and DEBUG is off: settings.py would sign sessions with its "
            "public development key."
        )
    if key.startswith(INSECURE_KEY_PREFIX):
        return "SECRET_KEY is a public development key (django-insecure-...) and DEBUG is off."
    for position, fallback in enumerate(getattr(settings, "SECRET_KEY_FALLBACKS", []), start=1):
        if fallback == public or str(fallback).startswith(INSECURE_KEY_PREFIX):
            return (
                f"Entry {position} of SECRET_KEY_FALLBACKS is a public development key and "
                "DEBUG is off."
            )
    return None


@register(Tags.security, deploy=True)
def check_secret_key(app_configs, **kwargs):
    """An error, not Django's warning W009: `release` (check --deploy) stops on it."""
    problem = public_secret_key_problem()
    if problem is None:
        return []
    return [Error(problem, hint=SECRET_KEY_HINT, id="billables.E004")]


def refuse_public_secret_key() -> None:
    """Called as the web application loads: gunicorn never serves on a public key."""
    problem = public_secret_key_problem()
    if problem is not None:
        raise ImproperlyConfigured(f"{problem} {SECRET_KEY_HINT}")


@register(Tags.security, deploy=True)
def check_encryption_keys(app_configs, **kwargs):
    keys = [key.strip() for key in settings.BILLABLES_ENCRYPTION_KEYS if key.strip()]
    if not keys:
        return [
            Warning(
                "BILLABLES_ENCRYPTION_KEYS is not set: QuickBooks and tracker connections "
                "cannot store their credentials.",
                hint="Generate a key with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'` (docs/deployment.md).",
                id="billables.W001",
            )
        ]
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            problems.append(
                Error(
                    f"Key {position} of BILLABLES_ENCRYPTION_KEYS is not a Fernet key.",
                    hint="A Fernet key is 32 bytes, url-safe base64 encoded (44 characters).",
                    id="billables.E002",
                )
            )
    if DEVELOPMENT_KEY in keys:
        problems.append(
            Warning(
                "BILLABLES_ENCRYPTION_KEYS contains the public development key.",
                hint="Put a key of your own first, run `manage.py reencrypt_secrets`, then "
                "remove the development key (docs/runbook.md, rotating the encryption key).",
                id="billables.W003",
            )
        )
    return problems
