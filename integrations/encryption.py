"""Encryption at rest for third-party credentials (tracker API tokens, QuickBooks OAuth tokens).

Keys come from `BILLABLES_ENCRYPTION_KEYS`: a comma-separated list of Fernet keys, newest first.
It is deliberately not SECRET_KEY, so rotating one never breaks the other. New values are
encrypted with the first key; any listed key decrypts (MultiFernet), so rotation is: put a new
key first, run `manage.py reencrypt_secrets`, then drop the old key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """A stored secret was encrypted with a key that is no longer configured."""


def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.BILLABLES_ENCRYPTION_KEYS if k.strip()]
    if not keys:
        raise ImproperlyConfigured(
            "BILLABLES_ENCRYPTION_KEYS is not set: generate a key with `python -c 'from "
            "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"BILLABLES_ENCRYPTION_KEYS holds an invalid key: {exc}"
        ) from exc


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with the configured keys"
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the newest key (for key rotation)."""
    return _fernet().rotate(ciphertext.encode()).decode() if ciphertext else ""
