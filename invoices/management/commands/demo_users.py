from django.contrib.auth.models import Group, User
from django.core.checks import Tags
from django.core.management.base import BaseCommand

DEMO_USER, DEMO_PASSWORD = "demo", "billables-demo"
# One login per role of the review desk (groups made by migration invoices 0004), to try them.
ROLE_USERS = {"ops": "Ops staff", "approver": "Approvers"}


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Create the demo logins if they do not exist. For the demo only."

    def handle(self, *args, **options):
        if User.objects.filter(username=DEMO_USER).exists():
            self.stdout.write(f"demo user '{DEMO_USER}' exists")
        else:
            User.objects.create_superuser(DEMO_USER, "demo@example.com", DEMO_PASSWORD)
            self.stdout.write(self.style.SUCCESS(f"created demo user '{DEMO_USER}'"))
        for username, group_name in ROLE_USERS.items():
            group = Group.objects.filter(name=group_name).first()
            if group is None or User.objects.filter(username=username).exists():
                continue
            user = User.objects.create_user(
                username, f"{username}@example.com", DEMO_PASSWORD, is_staff=True
            )
            user.groups.add(group)
            self.stdout.write(
                self.style.SUCCESS(f"created '{username}' ({group_name}), password {DEMO_PASSWORD}")
            )
