"""Re-encrypt every stored credential with the newest key of BILLABLES_ENCRYPTION_KEYS.

Rotation (docs/runbook.md, "Rotating the encryption key"): put the new key first in
BILLABLES_ENCRYPTION_KEYS and keep the old ones after it, restart web and workers, run this
command, and only when it reports nothing left on an old key and nothing unreadable, drop the
old keys.

Which values: every field named `*_encrypted` of this project's models (today the QuickBooks
connection's tokens and, once tracker sync is installed, each tracker connection's token), so
a credential added later is covered without changing this command. Each model is done in one
transaction holding its rows `FOR UPDATE`: a worker refreshing the QuickBooks tokens at the
same moment waits for it (and vice versa), so a freshly rotated refresh token is never
overwritten with an older one. Running it twice is harmless: values already on the newest
key are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from integrations.encryption import SecretUnreadable, rotate

SUFFIX = "_encrypted"


@dataclass
class RotationReport:
    rotated: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """(model, its `*_encrypted` fields) for this project's apps, in a stable order."""
    found = []
    for config in apps.get_app_configs():
        path = Path(config.path)
        if not path.is_relative_to(settings.BASE_DIR) or "site-packages" in path.parts:
            continue  # third-party apps (also those installed in a .venv here) keep their own
        for model in config.get_models():
            if model._meta.proxy:
                continue
            names = [
                f.name
                for f in model._meta.concrete_fields
                if f.name.endswith(SUFFIX) and isinstance(f, models.CharField | models.TextField)
            ]
            if names:
                found.append((model, names))
    return sorted(found, key=lambda item: item[0]._meta.label)


def _newest_key() -> Fernet:
    keys = [key.strip() for key in settings.BILLABLES_ENCRYPTION_KEYS if key.strip()]
    if not keys:
        raise CommandError("BILLABLES_ENCRYPTION_KEYS is not set (docs/deployment.md)")
    try:
        return Fernet(keys[0].encode())
    except ValueError as exc:
        raise CommandError(f"the first key of BILLABLES_ENCRYPTION_KEYS is invalid: {exc}") from exc


def reencrypt_all(*, dry_run: bool = False) -> RotationReport:
    report = RotationReport()
    newest = _newest_key()
    for model, names in encrypted_fields():
        with transaction.atomic():
            rows = model._base_manager.select_for_update().only("pk", *names).order_by("pk")
            for row in rows:
                changes = {}
                for name in names:
                    value = getattr(row, name)
                    if not value:
                        continue
                    try:
                        newest.decrypt(value.encode())
                    except InvalidToken:
                        pass
                    else:
                        report.current += 1
                        continue
                    try:
                        changes[name] = rotate(value)
                    except (SecretUnreadable, InvalidToken):  # rotate() lets the latter out
                        report.unreadable.append(f"{model._meta.label} #{row.pk} {name}")
                if changes:
                    report.rotated += len(changes)
                    if not dry_run:
                        # update(): no save() side effects (auto_now, signals) for a re-encryption.
                        model._base_manager.filter(pk=row.pk).update(**changes)
    return report


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Re-encrypt stored credentials with the newest key of BILLABLES_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be re-encrypted; write nothing"
        )

    def handle(self, *args, **options):
        report = reencrypt_all(dry_run=options["dry_run"])
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        self.stdout.write(
            f"{verb} {report.rotated} value(s); {report.current} already on the newest key."
        )
        if report.unreadable:
            raise CommandError(
                f"{len(report.unreadable)} value(s) cannot be decrypted with any configured key "
                f"and were left as they are: {', '.join(report.unreadable)}. Put the key they "
                "were written with back into BILLABLES_ENCRYPTION_KEYS and run this again, or "
                "reconnect those connections in the admin. Do not drop old keys yet."
            )
