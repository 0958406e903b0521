"""Everything billables holds about one client, as one JSON document (data retention, access
requests, or a client leaving the firm).

    manage.py export_client_data "Acme Legal LLP" -o acme.json

Sections (format `billables.client-data/1`; amounts and quantities are strings, exact):
- `client`, `policy`, `projects`: the client and its billing configuration (rates, billing
  codes, multipliers, caps and client rules included);
- `entries`: every time entry of the client, also those deleted at the source, with its
  classification (the decision, the tier that made it, a reviewer's correction) and, when the
  source changed it after approval, the recorded change;
- `import_batches`: the files and sync runs those entries came from;
- `invoices`: every invoice, void ones too, with lines (and the entry keys on each line and
  its derivation), pending entries and QuickBooks pushes;
- `audit_trail`: the invoices' domain events (approved, voided, pushed, ...) and, where the
  row-level audit trail is installed, every recorded change to the client's rows, with who
  made it and from where.

Credentials are never exported (they belong to the firm's connections, not to a client).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.apps import apps
from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from invoices.models import (
    BillingCode,
    Cap,
    ClassificationRule,
    ClientPolicy,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceLine,
    InvoicePush,
    Rate,
    RateMultiplier,
)
from timesheets.models import Client, ImportBatch, TimeEntry

FORMAT = "billables.client-data/1"


def _user(user) -> str | None:
    return user.get_username() if user is not None else None


def _row(obj: models.Model, *, exclude: tuple[str, ...] = ()) -> dict:
    """A model row as plain values; foreign keys as ids (`client_id`), credentials never."""
    data = {}
    for f in obj._meta.concrete_fields:
        if f.name in exclude or f.name.endswith("_encrypted"):
            continue
        data[f.attname] = getattr(obj, f.attname)
    return data


def _entries(client: Client) -> list[dict]:
    rows = (
        TimeEntry._base_manager.filter(client=client)
        .select_related("person", "project", "classification", "classification__category")
        .select_related("classification__manual_category", "classification__manual_by")
        .order_by("date", "id")
    )
    result = []
    for entry in rows.iterator(chunk_size=2000):
        data = {
            "key": entry.key,
            **_row(entry, exclude=("normalized_notes",)),
            "person": {"name": entry.person.name, "email": entry.person.email},
            "project": {"code": entry.project.code, "name": entry.project.name},
        }
        decision = getattr(entry, "classification", None)
        data["classification"] = (
            None
            if decision is None
            else {
                **_row(decision, exclude=("entry",)),
                "category": decision.category.key if decision.category else None,
                "manual_category": (
                    decision.manual_category.key if decision.manual_category else None
                ),
                "manual_by": _user(decision.manual_by),
            }
        )
        result.append(data)
    return result


def _invoices(client: Client) -> list[dict]:
    invoices = list(
        Invoice.objects.filter(client=client)
        .select_related("project", "approved_by", "voided_by")
        .order_by("period_start", "id")
    )
    lines: dict[int, list[InvoiceLine]] = {}
    for line in InvoiceLine.objects.filter(invoice__in=invoices).select_related("category"):
        lines.setdefault(line.invoice_id, []).append(line)
    links: dict[int, list[InvoiceEntry]] = {}
    for link in InvoiceEntry.objects.filter(invoice__in=invoices).select_related("entry"):
        links.setdefault(link.invoice_id, []).append(link)
    pushes: dict[int, list[InvoicePush]] = {}
    for push in InvoicePush.objects.filter(invoice__in=invoices).order_by("generation"):
        pushes.setdefault(push.invoice_id, []).append(push)

    result = []
    for inv in invoices:
        inv_links = sorted(links.get(inv.id, []), key=lambda link: link.entry_id)
        keys_by_line: dict[int, list[str]] = {}
        for link in inv_links:
            if link.line_id is not None:
                keys_by_line.setdefault(link.line_id, []).append(link.entry.key)
        result.append(
            {
                "number": inv.number,
                **_row(inv, exclude=("approved_by", "voided_by")),
                "project": {"code": inv.project.code, "name": inv.project.name}
                if inv.project
                else None,
                "approved_by": _user(inv.approved_by),
                "voided_by": _user(inv.voided_by),
                "lines": [
                    {
                        **_row(line, exclude=("invoice",)),
                        "category": line.category.key if line.category else None,
                        "entries": keys_by_line.get(line.id, []),
                    }
                    for line in sorted(lines.get(inv.id, []), key=lambda line: line.position)
                ],
                "entries": [
                    {
                        "entry": link.entry.key,
                        "state": link.state,
                        "pending_reason": link.pending_reason,
                        "is_live": link.is_live,
                        "raw_seconds": link.raw_seconds,
                        "billed_seconds": link.billed_seconds,
                    }
                    for link in inv_links
                ],
                "quickbooks_pushes": [
                    _row(push, exclude=("invoice", "requested_by"))
                    for push in pushes.get(inv.id, [])
                ],
            }
        )
    return result


def _domain_events(client: Client) -> list[dict]:
    events = InvoiceEvent.objects.filter(invoice__client=client).select_related("actor")
    return [
        {
            "invoice_id": event.invoice_id,
            "action": event.action,
            "actor": _user(event.actor),
            "at": event.at,
            "detail": event.detail,
        }
        for event in events.order_by("at", "id")
    ]


def _row_history(client: Client) -> list[dict]:
    """Row-level audit events (django-pghistory) of the client's rows, where installed.

    Filtered on the event's own snapshot (`client_id`, or the entry's client), so changes to
    rows deleted since are included too."""
    if not apps.is_installed("pghistory"):
        return []
    from pghistory.models import Event

    entry_ids = TimeEntry._base_manager.filter(client=client).values("id")
    result = []
    event_models = [
        model
        for model in apps.get_models()
        if issubclass(model, Event) and not model._meta.abstract and not model._meta.proxy
    ]
    for model in sorted(event_models, key=lambda m: m._meta.label):
        names = {f.name for f in model._meta.concrete_fields}
        if "client" in names:
            rows = model.objects.filter(client_id=client.pk)
        elif "entry" in names:
            rows = model.objects.filter(entry_id__in=entry_ids)
        else:
            continue
        rows = rows.select_related("pgh_context").order_by("pgh_created_at", "pgh_id")
        for event in rows.iterator(chunk_size=2000):
            context = getattr(event, "pgh_context", None)
            result.append(
                {
                    "table": model._meta.label,
                    "event": event.pgh_label,
                    "at": event.pgh_created_at,
                    "context": context.metadata if context is not None else None,
                    "row": _row(event, exclude=("pgh_id", "pgh_created_at", "pgh_label")),
                }
            )
    return result


def export_client(*, client: Client) -> dict:
    entries = _entries(client)
    batch_ids = {entry["import_batch_id"] for entry in entries if entry["import_batch_id"]}
    policy = ClientPolicy.objects.filter(client=client).first()
    # Rates and rules set on one of the client's projects may leave the client field empty.
    mine = Q(client=client) | Q(project__client=client)
    return {
        "format": FORMAT,
        "exported_at": datetime.now(UTC),
        "client": _row(client),
        "policy": (
            {
                **_row(policy),
                "non_billable_categories": sorted(
                    policy.non_billable_categories.values_list("key", flat=True)
                ),
            }
            if policy
            else None
        ),
        "projects": [_row(project) for project in client.projects.order_by("id")],
        "rates": [_row(rate) for rate in Rate.objects.filter(mine).order_by("id")],
        "billing_codes": [_row(c) for c in BillingCode.objects.filter(client=client)],
        "rate_multipliers": [_row(m) for m in RateMultiplier.objects.filter(client=client)],
        "caps": [_row(cap) for cap in Cap.objects.filter(client=client)],
        "classification_rules": [
            _row(rule) for rule in ClassificationRule.objects.filter(mine).order_by("id")
        ],
        "entries": entries,
        "import_batches": [
            _row(batch, exclude=("imported_by",))
            for batch in ImportBatch.objects.filter(id__in=batch_ids).order_by("id")
        ],
        "invoices": _invoices(client),
        "audit_trail": {
            "invoice_events": _domain_events(client),
            "row_history": _row_history(client),
        },
    }


def find_client(name_or_id: str) -> Client:
    client = Client.objects.filter(name__iexact=name_or_id).first()
    if client is None and name_or_id.isdigit():
        client = Client.objects.filter(pk=int(name_or_id)).first()
    if client is None:
        raise CommandError(f"no client named {name_or_id!r} (give its name or id)")
    return client


class Command(BaseCommand):
    # Model checks only: a data command serves no pages, so it skips the URL and admin checks
    # (which import every admin module: most of a command's start-up, issue #12).
    requires_system_checks = [Tags.models]
    help = "Write one client's entries, invoices (with lines) and audit trail as JSON."

    def add_arguments(self, parser):
        parser.add_argument("client", help="the client's name (any case) or id")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, **options):
        document = export_client(client=find_client(options["client"]))
        text = json.dumps(document, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False) + "\n"
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(
                f"wrote {len(document['entries'])} entries and "
                f"{len(document['invoices'])} invoices to {options['output']}"
            )
        else:
            self.stdout.write(text, ending="")
