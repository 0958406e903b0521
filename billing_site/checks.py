"""Deploy checks of our own, run by `manage.py check --deploy` (and so by the release step)."""

from __future__ import annotations

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# The fixed key settings.py falls back to with DEBUG on: public, in the repository.
DEVELOPMENT_KEY = "ZGV2ZWxvcG1lbnQtb25seS1rZXktbm90LWZvci11c2U="


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
