"""Invoices in the admin: the list (status, total, flags, pending entries), the actions that
change an invoice (rebuild, approve, void; each through the same service as the commands),
and the invoice events.

The invoice page itself is `invoices.admin.review` and the month end `invoices.admin.overview`
(mixed into `InvoiceAdmin` here); QuickBooks adds its column, actions and panel in
`invoices.admin.quickbooks`.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from invoices import quickbooks
from invoices.admin.overview import MonthEndViews
from invoices.admin.review import InvoiceReviewViews, require_post
from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.drafting import DraftingError, rebuild_invoice
from invoices.models import Flag, Invoice, InvoiceEntry, InvoiceEvent, InvoiceStatus


class FlagFilter(admin.SimpleListFilter):
    title = "flag"
    parameter_name = "flag"

    def lookups(self, request, model_admin):
        return Flag.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(flags__contains=[self.value()])
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(InvoiceReviewViews, MonthEndViews, admin.ModelAdmin):
    list_display = [
        "number_label",
        "client",
        "project",
        "period_start",
        "period_end",
        "status",
        "currency",
        "total",
        "flag_list",
        "pending_count",
    ]
    list_filter = ["status", FlagFilter, "client", "period_start"]
    list_select_related = ["client", "project"]
    search_fields = ["client__name"]
    # The unfiltered count is a second COUNT on every page; "Show all" says how many instead.
    show_full_result_count = False
    actions = ["rebuild_selected"]
    change_form_template = "admin/invoices/invoice/change_form.html"
    change_list_template = "admin/invoices/invoice/change_list.html"
    readonly_fields = [
        "client",
        "project",
        "period_start",
        "period_end",
        "status",
        "currency",
        "issue_date",
        "due_date",
        "subtotal",
        "adjustments",
        "discount",
        "total",
        "flags",
        "drafted_at",
        "approved_at",
        "approved_by",
        "voided_at",
        "voided_by",
    ]
    fields = readonly_fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending=Count(
                    "entry_links", filter=Q(entry_links__state=InvoiceEntry.State.PENDING)
                )
            )
        )

    def has_add_permission(self, request):
        return False  # drafts come from drafting, never by hand

    def has_delete_permission(self, request, obj=None):
        return False  # void instead: the audit trail stays

    def has_change_permission(self, request, obj=None):
        # An approved (or void) invoice is frozen for everyone, superusers included: its page
        # is read-only, and it changes only through voiding (section 8).
        if obj is not None and obj.is_frozen:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description="number", ordering="id")
    def number_label(self, obj):
        return obj.label

    @admin.display(description="flags")
    def flag_list(self, obj):
        return ", ".join(Flag(f).label for f in obj.flags) or "-"

    @admin.display(description="pending", ordering="pending")
    def pending_count(self, obj):
        return obj.pending

    def get_urls(self):
        views = [
            ("draft/", self.draft_view, "draft"),
            ("month/", self.month_view, "month"),
            ("<int:pk>/resolve/<int:entry_id>/", self.resolve_view, "resolve"),
            ("<int:pk>/print/", self.print_view, "print"),
            ("<int:pk>/pdf/", self.pdf_view, "pdf"),
            ("<int:pk>/approve/", self.approve_view, "approve"),
            ("<int:pk>/void/", self.void_view, "void"),
            ("<int:pk>/rebuild/", self.rebuild_view, "rebuild"),
        ]
        own = [
            path(route, self.admin_site.admin_view(view), name=f"invoices_invoice_{name}")
            for route, view, name in views
        ]
        return own + super().get_urls()

    def approve_view(self, request, pk):
        require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        # The page's Approve button says which build of the draft the reviewer saw; a rebuild
        # since (a correction, a new import) means they would approve figures they never saw
        # (reliability notes 3.3). The service compares it under the invoice's lock.
        seen = request.POST.get("seen") or None
        try:
            invoice = approve_invoice(invoice=invoice, user=request.user, seen_drafted_at=seen)
            self.message_user(request, f"{invoice.label} approved.", messages.SUCCESS)
        except InvalidTransition as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def void_view(self, request, pk):
        require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        reason = request.POST.get("reason", "").strip()[:500]
        if not reason:
            # Billing semantics 10.4 / issue 16: a void needs its reason (the page's form also
            # asks the browser to confirm); the audit row and the overview show it.
            self.message_user(
                request,
                f"{invoice.label} was not voided: give the reason for voiding it.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        try:
            void_invoice(invoice=invoice, user=request.user, reason=reason)
            self.message_user(
                request,
                f"{invoice.label} voided; its entries are free for the next draft.",
                messages.SUCCESS,
            )
        except InvalidTransition as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        # The form's "Also void it in QuickBooks" (shown when the invoice is in QuickBooks):
        # the void here is done and stays done whatever QuickBooks says.
        if request.POST.get("void_in_quickbooks"):
            try:
                row = quickbooks.void_in_quickbooks(invoice=invoice, user=request.user)
            except quickbooks.PushRefused as exc:
                self.message_user(
                    request,
                    f"{invoice.label} is void here but was not voided in QuickBooks: {exc}",
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    f"QuickBooks invoice {row.doc_number} will be voided in QuickBooks; the "
                    "QuickBooks section of this page shows when it is done.",
                    messages.SUCCESS,
                )
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def rebuild_view(self, request, pk):
        require_post(request)
        if not self.has_change_permission(request):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice, pk=pk)
        try:
            rebuilt = rebuild_invoice(invoice, user=request.user)
        except DraftingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        if rebuilt is None:
            self.message_user(
                request, "Nothing left to draft; the draft was removed.", messages.WARNING
            )
            return HttpResponseRedirect(reverse("admin:invoices_invoice_changelist"))
        self.message_user(
            request,
            f"{rebuilt.label} rebuilt: total {rebuilt.total} {rebuilt.currency}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[rebuilt.pk]))

    @admin.action(description="Rebuild selected drafts")
    def rebuild_selected(self, request, queryset):
        rebuilt = 0
        for invoice in queryset.filter(status=InvoiceStatus.DRAFT).order_by("id"):
            try:
                rebuild_invoice(invoice, user=request.user)
                rebuilt += 1
            except DraftingError as exc:
                self.message_user(request, f"{invoice.label}: {exc}", messages.ERROR)
        self.message_user(request, f"{rebuilt} draft(s) rebuilt.", messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        raise PermissionDenied("invoices change only through drafting, approval and voiding")


@admin.register(InvoiceEvent)
class InvoiceEventAdmin(admin.ModelAdmin):
    list_display = ["at", "invoice", "action", "actor", "detail"]
    list_filter = ["action"]
    list_select_related = ["invoice", "invoice__client", "actor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
