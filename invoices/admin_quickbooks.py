"""QuickBooks in the admin: the connection page (Connect starts Intuit's OAuth flow; the callback
lands here), the mapping pages (clients -> customers, categories -> items, chosen from lists
fetched from QuickBooks, or matched / created on request), and pushing on the invoice pages.

Everything calls the services in `invoices.quickbooks`; this module only collects input and
turns named errors into messages. It is imported at the end of `invoices/admin.py`.

The pages are small templates kept here (they extend the admin's base template). Buttons on
the invoice page use the `form="invoice_form"` attribute: the invoice page's own action forms
are nested inside the change form, and a browser drops nested forms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template import engines
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from integrations.quickbooks import QuickBooksError
from invoices import admin as invoice_admin
from invoices import quickbooks as service
from invoices.admin import InvoiceAdmin
from invoices.approval import InvalidTransition
from invoices.models import (
    Category,
    CustomerMapping,
    Invoice,
    InvoicePush,
    InvoiceStatus,
    ItemMapping,
    QuickBooksConnection,
)
from timesheets.models import Client

SERVICE_ERRORS = (
    QuickBooksError,
    service.NotConnected,
    service.PushRefused,
    service.ConnectRefused,
    InvalidTransition,
)

CONNECTION_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}
<div id="content-main">
  <p>Status: <strong>{{ conn.get_status_display }}</strong>
  {% if conn.realm_id %} &middot; company (realm) {{ conn.realm_id }}{% endif %}
  &middot; environment {{ conn.environment }}</p>
  {% if conn.last_error %}<p class="errornote">{{ conn.last_error }}</p>{% endif %}
  {% if conn.access_token_expires_at %}<p>Access token valid until
    {{ conn.access_token_expires_at|date:"Y-m-d H:i" }}{% if conn.refresh_token_expires_at %};
    refresh token until {{ conn.refresh_token_expires_at|date:"Y-m-d" }}{% endif %}.</p>
  {% endif %}
  {% if can_change %}
  <form method="post" action="{% url 'admin:invoices_quickbooksconnection_connect' %}">
    {% csrf_token %}
    {% if conn.status == 'disconnected' %}
      <input type="submit" class="default" value="Connect to QuickBooks">
    {% else %}
      <input type="submit" class="default" value="Reconnect to QuickBooks">
    {% endif %}
  </form>
  {% if conn.status != 'disconnected' %}
  <form method="post" action="{% url 'admin:invoices_quickbooksconnection_disconnect' %}">
    {% csrf_token %}<input type="submit" value="Disconnect">
  </form>{% endif %}
  {% endif %}
  <h2>Mapping</h2>
  <ul>
    <li><a href="{% url 'admin:invoices_quickbooksconnection_customers' %}">
      Clients to QuickBooks customers</a>
      ({{ mapped_clients }} of {{ clients }} mapped)</li>
    <li><a href="{% url 'admin:invoices_quickbooksconnection_items' %}">
      Categories to QuickBooks items</a>
      ({{ mapped_categories }} of {{ categories }} mapped; default item:
      {{ conn.default_item_name|default:"none" }})</li>
  </ul>
</div>
{% endblock %}
"""

MAPPING_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}
<div id="content-main">
<form method="post">{% csrf_token %}
  <p>{{ intro }}</p>
  <table>
    <thead><tr><th></th><th>{{ ours_label }}</th><th>QuickBooks {{ theirs_label }}</th></tr>
    </thead>
    <tbody>
    {% for row in rows %}
      <tr><td><input type="checkbox" name="selected" value="{{ row.pk }}"></td>
        <td>{{ row.name }}</td>
        <td>{% if choices is not None %}<select name="map-{{ row.pk }}">
          <option value="">(not mapped)</option>
          {% for id, name in choices %}
            <option value="{{ id }}"{% if id == row.mapped_id %} selected{% endif %}>
              {{ name }}</option>
          {% endfor %}
        </select>{% else %}{{ row.mapped_name|default:"(not mapped)" }}{% endif %}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% if show_default %}
  <p><label>Default item (lines without a category: discounts and adjustments):
    {% if choices is not None %}<select name="default-item"><option value="">(none)</option>
    {% for id, name in choices %}
      <option value="{{ id }}"{% if id == default_id %} selected{% endif %}>{{ name }}</option>
    {% endfor %}
    </select>{% else %}{{ default_name|default:"none" }}{% endif %}</label></p>
  {% endif %}
  {% if can_change %}
  <div class="submit-row">
    {% if choices is not None %}
      <input type="submit" class="default" name="action" value="Save">
    {% endif %}
    <input type="submit" name="action" value="Match by name">
    <input type="submit" name="action" value="Create missing in QuickBooks">
  </div>
  <p class="help">Match and create apply to the ticked rows, or to every unmapped row when
    none is ticked.</p>
  {% endif %}
</form>
</div>
{% endblock %}
"""


def _render(request: HttpRequest, source: str, context: dict) -> HttpResponse:
    template = engines["django"].from_string(source)
    return HttpResponse(template.render({**admin.site.each_context(request), **context}, request))


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


def _require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        raise PermissionDenied("use the buttons on the page")


def _redirect_uri(request: HttpRequest) -> str:
    from django.conf import settings

    return getattr(settings, "QBO_REDIRECT_URI", "") or request.build_absolute_uri(
        reverse("admin:invoices_quickbooksconnection_callback")
    )


# --- Connection and mapping pages ---------------------------------------------------------


def _error_text(exc: Exception) -> str:
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
        return _render(
            request,
            CONNECTION_PAGE,
            {
                "title": "QuickBooks Online",
                "conn": conn,
                "opts": self.model._meta,
                "can_change": self.has_change_permission(request),
                "clients": Client.objects.count(),
                "mapped_clients": CustomerMapping.objects.count(),
                "categories": Category.objects.count(),
                "mapped_categories": ItemMapping.objects.count(),
            },
        )

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:invoices_quickbooksconnection_changelist"))

    def connect_view(self, request):
        _require_post(request)
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
        _require_post(request)
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
                    f"Could not read the list from QuickBooks: {_error_text(exc)}",
                    messages.ERROR,
                )
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            try:
                self._apply(request, kind, choices)
            except SERVICE_ERRORS as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.path)
        conn = service.load_connection()
        return _render(
            request,
            MAPPING_PAGE,
            {
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
            },
        )

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


# --- Invoices: push status, actions and buttons -------------------------------------------


def _latest_push(invoice: Invoice) -> InvoicePush | None:
    pushes = sorted(invoice.pushes.all(), key=lambda p: p.generation)
    return pushes[-1] if pushes else None


def push_summary(push: InvoicePush | None) -> str:
    if push is None:
        return "-"
    if push.status in service.IN_QUICKBOOKS:
        remote = f", {push.qbo_status} there" if push.qbo_status else ""
        return f"{push.get_status_display()}: {push.doc_number} (id {push.qbo_invoice_id}){remote}"
    if push.last_error:
        return f"{push.get_status_display()}: {push.last_error[:120]}"
    return push.get_status_display()


def review_offers_send(invoice: Invoice, user) -> bool:
    """Whether the invoice page's review section already shows "Send to QuickBooks"."""
    offers = getattr(invoice_admin, "_quickbooks_send_url", None)
    return bool(offers and offers(invoice, user))


class QuickBooksInvoiceAdmin(InvoiceAdmin):
    """The invoice review desk plus QuickBooks: a status column, actions on one or many
    invoices, and a QuickBooks section on the invoice page with push history, errors and the
    buttons that apply (send, approve and send, retry, push again after a void there)."""

    list_display = [*InvoiceAdmin.list_display, "quickbooks_status"]
    actions = [*InvoiceAdmin.actions, "send_to_quickbooks", "approve_and_send_to_quickbooks"]
    fields = None

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("pushes")

    @admin.display(description="QuickBooks")
    def quickbooks_status(self, obj):
        return push_summary(_latest_push(obj))

    # The panel needs the request (for the buttons a user may press), so it is a callable
    # made once per request and listed both as a read-only field and in the fieldsets.
    def _panel(self, request):
        if not hasattr(request, "_quickbooks_panel"):

            def quickbooks(obj):
                return self._panel_html(request, obj)

            quickbooks.short_description = "QuickBooks"
            request._quickbooks_panel = quickbooks
        return request._quickbooks_panel

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), self._panel(request)]

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": list(InvoiceAdmin.fields)}),
            ("QuickBooks", {"fields": [self._panel(request)]}),
        ]

    def _panel_html(self, request, invoice: Invoice):
        pushes = sorted(invoice.pushes.all(), key=lambda p: p.generation)
        user = request.user
        may_push = user.has_perm("invoices.add_invoicepush")
        latest = pushes[-1] if pushes else None
        buttons = []

        def button(label, url_name, css=""):
            buttons.append(
                format_html(
                    '<button type="submit" form="invoice_form" formmethod="post" formaction="{}"'
                    ' class="button{}">{}</button> ',
                    reverse(url_name, args=[invoice.pk]),
                    css,
                    label,
                )
            )

        if (
            may_push
            and invoice.status == InvoiceStatus.DRAFT
            and user.has_perm("invoices.approve_invoice")
        ):
            button(
                "Approve and send to QuickBooks",
                "admin:invoices_invoice_qbo_approve_send",
                " default",
            )
        if may_push and invoice.status == InvoiceStatus.APPROVED:
            if latest is None:
                # The review section above offers this button when QuickBooks is connected.
                if not review_offers_send(invoice, user):
                    button("Send to QuickBooks", "admin:invoices_invoice_qbo_send", " default")
            elif latest.status == InvoicePush.Status.FAILED:
                button("Retry sending to QuickBooks", "admin:invoices_invoice_qbo_send", " default")
            elif latest.status in service.IN_QUICKBOOKS and (
                latest.qbo_status in service.FINAL_REMOTE_STATUSES
            ):
                button(
                    f"Push again as a new QuickBooks invoice ({latest.qbo_status} there)",
                    "admin:invoices_invoice_qbo_push_again",
                )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    p.generation,
                    p.request_id,
                    p.get_status_display(),
                    f"{p.doc_number} (id {p.qbo_invoice_id})" if p.qbo_invoice_id else "",
                    p.qbo_total if p.qbo_total is not None else "",
                    p.qbo_status or "",
                    p.pushed_at.strftime("%Y-%m-%d %H:%M") if p.pushed_at else "",
                    p.last_error,
                )
                for p in pushes
            ),
        )
        table = (
            format_html(
                "<table><thead><tr><th>#</th><th>Request id</th><th>Status</th><th>QuickBooks "
                "invoice</th><th>QuickBooks total</th><th>There</th><th>Pushed</th><th>Error</th>"
                "</tr></thead><tbody>{}</tbody></table>",
                rows,
            )
            if pushes
            else format_html("<p>{}</p>", "Not sent to QuickBooks.")
        )
        void_note = ""
        if (
            invoice.status == InvoiceStatus.VOID
            and latest
            and latest.status in (service.IN_QUICKBOOKS)
            and latest.qbo_status not in service.FINAL_REMOTE_STATUSES
        ):
            void_note = format_html(
                '<p class="errornote">Void here, but QuickBooks invoice {} is still open '
                "there: void it in QuickBooks.</p>",
                latest.doc_number,
            )
        return format_html(
            "<div>{}{}<p>{}</p></div>",
            void_note,
            table,
            format_html_join("", "{}", ((b,) for b in buttons)),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path(
                "<int:pk>/quickbooks/send/",
                view(self.qbo_send_view),
                name="invoices_invoice_qbo_send",
            ),
            path(
                "<int:pk>/quickbooks/approve-and-send/",
                view(self.qbo_approve_send_view),
                name="invoices_invoice_qbo_approve_send",
            ),
            path(
                "<int:pk>/quickbooks/push-again/",
                view(self.qbo_push_again_view),
                name="invoices_invoice_qbo_push_again",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        reconnect_banner(request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            reconnect_banner(request)
        return super().change_view(request, object_id, form_url, extra_context)

    def _qbo_action(self, request, pk, call, done):
        _require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        try:
            push = call(invoice=invoice, user=request.user)
        except SERVICE_ERRORS as exc:
            self.message_user(request, _error_text(exc), messages.ERROR)
        else:
            self.message_user(
                request, f"{invoice.number}: {done} (request {push.request_id}).", messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def qbo_send_view(self, request, pk):
        return self._qbo_action(request, pk, service.request_push, "queued for QuickBooks")

    def qbo_approve_send_view(self, request, pk):
        return self._qbo_action(
            request, pk, service.approve_and_push, "approved and queued for QuickBooks"
        )

    def qbo_push_again_view(self, request, pk):
        return self._qbo_action(
            request, pk, service.push_again, "queued as a new QuickBooks invoice"
        )

    def _bulk(self, request, queryset, call, verb):
        queued, refused = 0, []
        for invoice in queryset.order_by("id"):
            try:
                call(invoice=invoice, user=request.user)
                queued += 1
            except SERVICE_ERRORS as exc:
                refused.append(_error_text(exc))
        if queued:
            self.message_user(
                request,
                f"{queued} invoice(s) {verb}; they are sent one at a "
                "time, within QuickBooks' limits.",
                messages.SUCCESS,
            )
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)

    @admin.action(description="Send to QuickBooks (or retry a failed send)")
    def send_to_quickbooks(self, request, queryset):
        self._bulk(request, queryset, service.request_push, "queued for QuickBooks")

    @admin.action(description="Approve and send to QuickBooks")
    def approve_and_send_to_quickbooks(self, request, queryset):
        self._bulk(
            request, queryset, service.approve_and_push, "approved and queued for QuickBooks"
        )


admin.site.unregister(Invoice)
admin.site.register(Invoice, QuickBooksInvoiceAdmin)
