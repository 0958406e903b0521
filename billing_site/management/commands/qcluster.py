"""django-q2's `qcluster`, refusing to start on a missing or public SECRET_KEY with DEBUG off.

The workers sign and read every task with SECRET_KEY (django-q2 signs the broker's payloads),
so they are held to the web application's rule (`billing_site.checks`). This command takes
precedence over django-q2's because `billing_site` is listed before `django_q` in
INSTALLED_APPS (Django uses the first app that provides a command).
"""

from django.core.management.base import CommandError
from django_q.management.commands.qcluster import Command as QClusterCommand

from billing_site.checks import SECRET_KEY_HINT, public_secret_key_problem


class Command(QClusterCommand):
    def handle(self, *args, **options):
        problem = public_secret_key_problem()
        if problem is not None:
            raise CommandError(f"{problem} {SECRET_KEY_HINT}")
        return super().handle(*args, **options)
