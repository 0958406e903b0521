"""QuickBooks setup in the admin: the connection page (Connect starts Intuit's OAuth flow; the
callback lands here) and the mapping pages (clients -> customers, categories -> items, chosen
from lists fetched from QuickBooks, or matched / created on request). Also what the invoice
side (`invoices.admin.quickbooks`) shares: the service errors shown as messages and the
"needs reconnecting" banner.

Everything calls the services in `invoices.quickbooks`; this module only collects input and
turns named errors into messages. The pages are templates under
`templates/admin/invoices/quickbooks/` (they extend the admin's base template).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from integrations.quickbooks import QuickBooksError
from invoices import quickbooks as service
from invoices.approval import InvalidTransition
from invoices.models import Category, CustomerMapping, ItemMapping, QuickBooksConnection
from timesheets.models import Client

SERVICE_ERRORS = (
    QuickBooksError,
    service.NotConnected,
    service.PushRefused,
    service.ConnectRefused,
    InvalidTransition,
)


def reconnect_banner(request: HttpRequest) -> None:
    """A warning on the page when QuickBooks needs reconnecting."""
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    if conn is not None and conn.status == QuickBooksConnection.Status.NEEDS_RECONNECT:
        messages.warning(
            request,
            format_html(
                'QuickBooks needs reconnecting: {}. Pushes wait until it is. <a href="{}">Reconnect'
                "</a>",
                conn.last_error or "the connection expired",
                reverse("admin:invoices_quickbooksconnection_changelist"),
            ),
        )


def require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        raise PermissionDenied("use the buttons on the page")


def _redirect_uri(request: HttpRequest) -> str:
    return getattr(settings, "QBO_REDIRECT_URI", "") or request.build_absolute_uri(
        reverse("admin:invoices_quickbooksconnection_callback")
    )


def last_check_shown(conn: QuickBooksConnection) -> str:
    """`manage.py check_connections`' last word on the connection, and when."""
    if conn.last_checked_at is None:
        return "never checked (run manage.py check_connections --live)"
    when = timezone.localtime(conn.last_checked_at)
    return f"{conn.last_check_result} ({when:%Y-%m-%d %H:%M})"


def error_text(exc: Exception) -> str:
    return exc.message if isinstance(exc, QuickBooksError) else str(exc)


@dataclass(frozen=True)
class MappingKind:
    """What one mapping page maps: ours (clients or categories) to theirs (customers or
    items), and the services that fetch, save, match and create."""

    model: type
    related_name: str
    title: str
    intro: str
    ours_label: str
    theirs_label: str
    objects: Callable[[], QuerySet]
    mapped: Callable[[object], tuple[str, str]]
    fetch: Callable[[], list[tuple[str, str]]]
    save: Callable[[object, str, str], object]
    unmap: Callable[[object], None]
    match: Callable[[list], service.MappingSummary]
    create: Callable[[list], service.MappingSummary]

    def rows(self) -> list[dict]:
        rows = []
        for obj in self.objects().select_related(self.related_name):
            mapped_id, mapped_name = self.mapped(obj)
            rows.append(
                {"pk": obj.pk, "name": obj.name, "mapped_id": mapped_id, "mapped_name": mapped_name}
            )
        return rows


def _customer_of(client: Client) -> tuple[str, str]:
    mapping = getattr(client, "qbo_customer", None)
    return (mapping.qbo_customer_id, mapping.qbo_display_name) if mapping else ("", "")


def _item_of(category: Category) -> tuple[str, str]:
    mapping = getattr(category, "qbo_item", None)
    return (mapping.qbo_item_id, mapping.qbo_item_name) if mapping else ("", "")


CUSTOMERS = MappingKind(
    model=CustomerMapping,
    related_name="qbo_customer",
    title="Clients to QuickBooks customers",
    intro="Each client is invoiced in QuickBooks as one customer.",
    ours_label="Client",
    theirs_label="customer",
    objects=lambda: Client.objects.all(),
    mapped=_customer_of,
    fetch=lambda: [(c.id, c.display_name) for c in service.fetch_customers()],
    save=lambda obj, id_, name: service.map_client(client=obj, customer_id=id_, display_name=name),
    unmap=lambda obj: service.unmap_client(client=obj),
    match=lambda objs: service.match_clients(clients=objs),
    create=lambda objs: service.create_customers(clients=objs),
)
ITEMS = MappingKind(
    model=ItemMapping,
    related_name="qbo_item",
    title="Categories to QuickBooks items",
    intro="Each category's lines use one QuickBooks service item; lines without a category "
    "(discounts, not-to-exceed adjustments) use the default item.",
    ours_label="Category",
    theirs_label="item",
    objects=lambda: Category.objects.all(),
    mapped=_item_of,
    fetch=lambda: [(i.id, i.name) for i in service.fetch_items()],
    save=lambda obj, id_, name: service.map_category(category=obj, item_id=id_, item_name=name),
    unmap=lambda obj: service.unmap_category(category=obj),
    match=lambda objs: service.match_categories(categories=objs),
    create=lambda objs: service.create_items(categories=objs),
)


@admin.register(QuickBooksConnection)
class QuickBooksConnectionAdmin(admin.ModelAdmin):
    """One page: the connection's state, Connect / Reconnect, and links to the mappings."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path("connect/", view(self.connect_view), name="invoices_quickbooksconnection_connect"),
            path(
                "callback/", view(self.callback_view), name="invoices_quickbooksconnection_callback"
            ),
            path(
                "disconnect/",
                view(self.disconnect_view),
                name="invoices_quickbooksconnection_disconnect",
            ),
            path(
                "customers/",
                view(self.customers_view),
                name="invoices_quickbooksconnection_customers",
            ),
            path("items/", view(self.items_view), name="invoices_quickbooksconnection_items"),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:invoices_quickbooksconnection_changelist"))

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        reconnect_banner(request)
        conn = service.load_connection()
        context = {
            **self.admin_site.each_context(request),
            "title": "QuickBooks Online",
            "conn": conn,
            "last_check": last_check_shown(conn),
            "opts": self.model._meta,
            "can_change": self.has_change_permission(request),
            "clients": Client.objects.count(),
            "mapped_clients": CustomerMapping.objects.count(),
            "categories": Category.objects.count(),
            "mapped_categories": ItemMapping.objects.count(),
        }
        return TemplateResponse(request, "admin/invoices/quickbooks/connection.html", context)

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:invoices_quickbooksconnection_changelist"))

    def connect_view(self, request):
        require_post(request)
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            url = service.start_connect(redirect_uri=_redirect_uri(request))
        except QuickBooksError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return self._back()
        return HttpResponseRedirect(url)

    def callback_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        params = request.GET
        try:
            conn = service.complete_connect(
                state=params.get("state", ""),
                code=params.get("code", ""),
                realm_id=params.get("realmId", ""),
                error=params.get("error", ""),
                redirect_uri=_redirect_uri(request),
                user=request.user,
            )
        except service.ConnectRefused as exc:
            self.message_user(request, f"Not connected: {exc}", messages.ERROR)
        except QuickBooksError as exc:
            self.message_user(request, f"Not connected: {exc.message}", messages.ERROR)
        else:
            self.message_user(
                request, f"Connected to QuickBooks company {conn.realm_id}.", messages.SUCCESS
            )
        return self._back()

    def disconnect_view(self, request):
        require_post(request)
        if not self.has_change_permission(request):
            raise PermissionDenied
        service.disconnect(user=request.user)
        self.message_user(request, "Disconnected; tokens removed.", messages.SUCCESS)
        return self._back()

    def customers_view(self, request):
        return self._mapping_view(request, CUSTOMERS)

    def items_view(self, request):
        return self._mapping_view(request, ITEMS)

    def _mapping_view(self, request, kind: MappingKind):
        permissions = {
            f"invoices.{verb}_{kind.model._meta.model_name}" for verb in ("add", "change")
        }
        can_change = request.user.has_perms(permissions)
        if not can_change and not request.user.has_perm(
            f"invoices.view_{kind.model._meta.model_name}"
        ):
            raise PermissionDenied
        reconnect_banner(request)
        choices: list[tuple[str, str]] | None = None
        # The list is read for the page and to check a saved choice; match and create read it
        # themselves.
        if request.method != "POST" or request.POST.get("action") == "Save":
            try:
                choices = kind.fetch()
            except SERVICE_ERRORS as exc:
                self.message_user(
                    request,
                    f"Could not read the list from QuickBooks: {error_text(exc)}",
                    messages.ERROR,
                )
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            try:
                self._apply(request, kind, choices)
            except SERVICE_ERRORS as exc:
                self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.path)
        conn = service.load_connection()
        context = {
            **self.admin_site.each_context(request),
            "title": kind.title,
            "intro": kind.intro,
            "ours_label": kind.ours_label,
            "theirs_label": kind.theirs_label,
            "rows": kind.rows(),
            "choices": choices,
            "can_change": can_change,
            "opts": kind.model._meta,
            "show_default": kind is ITEMS,
            "default_id": conn.default_item_id,
            "default_name": conn.default_item_name,
        }
        return TemplateResponse(request, "admin/invoices/quickbooks/mapping.html", context)

    def _apply(self, request, kind: MappingKind, choices) -> None:
        action = request.POST.get("action", "")
        if action == "Save" and choices is not None:
            names = dict(choices)
            with transaction.atomic():
                for obj in kind.objects():
                    chosen = request.POST.get(f"map-{obj.pk}", "")
                    if chosen in names:
                        kind.save(obj, chosen, names[chosen])
                    elif chosen == "":
                        kind.unmap(obj)
                if kind is ITEMS:
                    chosen = request.POST.get("default-item", "")
                    service.set_default_item(
                        item_id=chosen if chosen in names else "", item_name=names.get(chosen, "")
                    )
            self.message_user(request, "Mapping saved.", messages.SUCCESS)
            return
        selected = [int(pk) for pk in request.POST.getlist("selected") if pk.isdigit()]
        targets = list(
            kind.objects().filter(pk__in=selected)
            if selected
            else kind.objects().filter(**{f"{kind.related_name}__isnull": True})
        )
        if action == "Match by name":
            self.message_user(request, str(kind.match(targets)), messages.SUCCESS)
        elif action == "Create missing in QuickBooks":
            self.message_user(request, str(kind.create(targets)), messages.SUCCESS)


@admin.register(CustomerMapping)
class CustomerMappingAdmin(admin.ModelAdmin):
    list_display = ["client", "qbo_display_name", "qbo_customer_id"]
    list_select_related = ["client"]

    def changelist_view(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("admin:invoices_quickbooksconnection_customers"))


@admin.register(ItemMapping)
class ItemMappingAdmin(admin.ModelAdmin):
    list_display = ["category", "qbo_item_name", "qbo_item_id"]
    list_select_related = ["category"]

    def changelist_view(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("admin:invoices_quickbooksconnection_items"))
