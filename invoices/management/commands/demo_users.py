from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

DEMO_USER, DEMO_PASSWORD = "demo", "billables-demo"


class Command(BaseCommand):
    help = "Create the demo login (a superuser) if it does not exist. For the demo only."

    def handle(self, *args, **options):
        if User.objects.filter(username=DEMO_USER).exists():
            self.stdout.write(f"demo user '{DEMO_USER}' exists")
            return
        User.objects.create_superuser(DEMO_USER, "demo@example.com", DEMO_PASSWORD)
        self.stdout.write(self.style.SUCCESS(f"created demo user '{DEMO_USER}'"))
