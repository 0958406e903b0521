"""Mapping clients to QuickBooks customers and categories to QuickBooks items (by name, or
creating what QuickBooks lacks), and what an invoice still needs mapped before it can go."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from integrations import quickbooks as qbo
from invoices.models import Category, CustomerMapping, Invoice, ItemMapping, QuickBooksConnection
from invoices.quickbooks.connection import load_connection, with_api
from timesheets.models import Client


def fetch_customers() -> list[qbo.RemoteCustomer]:
    return sorted(
        with_api(lambda api: api.list_customers()), key=lambda c: c.display_name.casefold()
    )


def fetch_items() -> list[qbo.RemoteItem]:
    return sorted(with_api(lambda api: api.list_items()), key=lambda i: i.name.casefold())


def map_client(*, client: Client, customer_id: str, display_name: str) -> CustomerMapping:
    mapping, _ = CustomerMapping.objects.update_or_create(
        client=client, defaults={"qbo_customer_id": customer_id, "qbo_display_name": display_name}
    )
    return mapping


def map_category(*, category: Category, item_id: str, item_name: str) -> ItemMapping:
    mapping, _ = ItemMapping.objects.update_or_create(
        category=category, defaults={"qbo_item_id": item_id, "qbo_item_name": item_name}
    )
    return mapping


def set_default_item(*, item_id: str, item_name: str) -> None:
    conn = load_connection()
    conn.default_item_id, conn.default_item_name = item_id, item_name
    conn.save(update_fields=["default_item_id", "default_item_name", "updated_at"])


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass
class MappingSummary:
    matched: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{len(self.matched)} matched by name", f"{len(self.created)} created"]
        if self.unmatched:
            parts.append("no QuickBooks record named like: " + ", ".join(self.unmatched))
        return "; ".join(parts)


def match_clients(*, clients: list[Client]) -> MappingSummary:
    """Map each client to the QuickBooks customer with the same name (case and spacing
    ignored); clients without one are listed, nothing is created."""
    by_name = {_name_key(c.display_name): c for c in fetch_customers()}
    summary = MappingSummary()
    for client in clients:
        found = by_name.get(_name_key(client.name))
        if found is None:
            summary.unmatched.append(client.name)
            continue
        map_client(client=client, customer_id=found.id, display_name=found.display_name)
        summary.matched.append(client.name)
    return summary


def create_customers(*, clients: list[Client]) -> MappingSummary:
    """Map each unmapped client to the customer of the same name, creating the ones QuickBooks
    lacks. Looking up first matters: QuickBooks refuses a second customer, vendor or
    employee with the same name (6240)."""
    clients = [c for c in clients if not CustomerMapping.objects.filter(client=c).exists()]
    summary = MappingSummary()

    def run(api: qbo.QuickBooksApi) -> None:
        by_name = {_name_key(c.display_name): c for c in api.list_customers()}
        for client in clients:
            found = by_name.get(_name_key(client.name))
            if found is None:
                found = api.create_customer(client.name)
                summary.created.append(client.name)
            else:
                summary.matched.append(client.name)
            map_client(client=client, customer_id=found.id, display_name=found.display_name)

    with_api(run)
    return summary


def match_categories(*, categories: list[Category]) -> MappingSummary:
    by_name = {_name_key(i.name): i for i in fetch_items()}
    summary = MappingSummary()
    for category in categories:
        found = by_name.get(_name_key(category.name))
        if found is None:
            summary.unmatched.append(category.name)
            continue
        map_category(category=category, item_id=found.id, item_name=found.name)
        summary.matched.append(category.name)
    return summary


def create_items(*, categories: list[Category]) -> MappingSummary:
    """Map each unmapped category to the service item of the same name, creating missing ones
    (on the income account `QBO_INCOME_ACCOUNT_ID`, else QuickBooks' services income
    account)."""
    categories = [c for c in categories if not ItemMapping.objects.filter(category=c).exists()]
    summary = MappingSummary()

    def run(api: qbo.QuickBooksApi) -> None:
        by_name = {_name_key(i.name): i for i in api.list_items()}
        account: str | None = getattr(settings, "QBO_INCOME_ACCOUNT_ID", "") or None
        for category in categories:
            found = by_name.get(_name_key(category.name))
            if found is None:
                account = account or api.income_account_id()
                if account is None:
                    raise qbo.QuickBooksValidationError(
                        "QuickBooks has no income account for new items: create one in "
                        "QuickBooks or set QBO_INCOME_ACCOUNT_ID"
                    )
                found = api.create_service_item(category.name, income_account_id=account)
                summary.created.append(category.name)
            else:
                summary.matched.append(category.name)
            map_category(category=category, item_id=found.id, item_name=found.name)

    with_api(run)
    return summary


def unmap_client(*, client: Client) -> None:
    CustomerMapping.objects.filter(client=client).delete()


def unmap_category(*, category: Category) -> None:
    ItemMapping.objects.filter(category=category).delete()


@dataclass(frozen=True)
class MissingMappings:
    client: str | None
    categories: tuple[str, ...]
    default_item: bool

    def __bool__(self) -> bool:
        return bool(self.client or self.categories or self.default_item)

    def message(self, number: str) -> str:
        parts = []
        if self.client:
            parts.append(f'client "{self.client}" to a QuickBooks customer')
        if len(self.categories) == 1:
            parts.append(f'category "{self.categories[0]}" to a QuickBooks item')
        elif self.categories:
            names = ", ".join(f'"{name}"' for name in self.categories)
            parts.append(f"categories {names} to QuickBooks items")
        if self.default_item:
            parts.append("a default item (for lines without a category: discounts and adjustments)")
        return f"{number} cannot go to QuickBooks until these are mapped: {'; '.join(parts)}."


def missing_mappings(*, invoice: Invoice) -> MissingMappings:
    lines = list(invoice.lines.select_related("category"))
    used = {line.category_id: line.category for line in lines if line.category_id}
    mapped = set(
        ItemMapping.objects.filter(category_id__in=used).values_list("category_id", flat=True)
    )
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    return MissingMappings(
        client=None
        if CustomerMapping.objects.filter(client_id=invoice.client_id).exists()
        else invoice.client.name,
        categories=tuple(
            sorted((c.name for pk, c in used.items() if pk not in mapped), key=str.casefold)
        ),
        default_item=any(line.category_id is None for line in lines)
        and not (conn and conn.default_item_id),
    )
