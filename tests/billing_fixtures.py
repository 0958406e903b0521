"""Small builders for billing tests (real PostgreSQL rows, no mocks)."""

import datetime as dt
import itertools
from decimal import Decimal

from invoices.models import Category, ClassificationRule, ClientPolicy, Firm, Rate
from timesheets.models import Client, Person, Project, TimeEntry
from timesheets.notes import normalize_notes

_ids = itertools.count(1)


def firm(currency="USD", default_rate="150.00"):
    f = Firm.load()
    f.name, f.currency = "Test firm", currency
    f.default_rate = Decimal(default_rate) if default_rate else None
    f.save()
    return f


def category(key, billable=True, code=""):
    return Category.objects.get_or_create(
        key=key,
        defaults={
            "name": key.replace("-", " ").capitalize(),
            "billable": billable,
            "billing_code": code,
        },
    )[0]


def client(name="Acme", **policy):
    c = Client.objects.create(name=name)
    ClientPolicy.objects.create(client=c, **policy)
    return c


def project(client, code="P1", name=None, billing="hourly"):
    return Project.objects.create(client=client, code=code, name=name or code, billing=billing)


def person(name="Ana Pereira", role="Partner", email=None):
    email = email or name.split()[0].lower() + "@example.com"
    return Person.objects.create(name=name, email=email, role=role)


def rate(amount, **target):
    return Rate.objects.create(rate=Decimal(amount), **target)


def rule(category, **matchers):
    return ClassificationRule.objects.create(category=category, **matchers)


def entry(
    project,
    person,
    *,
    day=dt.date(2026, 10, 5),
    minutes=60,
    notes="work",
    task="Dev",
    billable=True,
    seconds=None,
):
    n = next(_ids)
    return TimeEntry.objects.create(
        source="csv",
        external_id=f"test-{n}",
        person=person,
        client=project.client,
        project=project,
        task=task,
        date=day,
        duration_seconds=seconds if seconds is not None else minutes * 60,
        notes=notes,
        normalized_notes=normalize_notes(notes),
        tracker_billable=billable,
        content_hash=f"h{n}",
    )
