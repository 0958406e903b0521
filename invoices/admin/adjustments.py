"""A reviewer's adjustments in the admin (billing semantics 10.4): on an invoice's page, an
entry's hours written down or up and manual lines (fixed fee, expense, credit) added or
removed, each with a required reason, through the services of `invoices.adjustments`; and
read-only lists of every adjustment and manual line, with filters.

`InvoiceAdjustmentViews` is mixed into the invoice admin through `InvoiceReviewViews`
(`invoices.admin.review`): it adds its URLs and the page's "Adjustments and manual lines"
section (a fixed number of queries, whatever the number of lines).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from invoices.adjustments import (
    MAX_BILLED_HOURS,
    add_manual_line,
    adjust_entry,
    clear_adjustment,
    remove_manual_line,
)
from invoices.core.rounding import round_quantity
from invoices.drafting import Period
from invoices.errors import BillingError
from invoices.models import (
    Category,
    EntryAdjustment,
    Invoice,
    InvoiceEntry,
    InvoiceStatus,
    ManualLine,
)
from timesheets.models import Project

# Adjusting a draft changes what it bills, as rebuilding it does.
ADJUST_PERMISSION = "invoices.change_invoice"
SECTION = "#adjustments"


class AdjustEntryForm(forms.Form):
    billed_hours = forms.DecimalField(
        min_value=Decimal(0), max_value=MAX_BILLED_HOURS, max_digits=8, decimal_places=4
    )
    reason = forms.CharField(max_length=300)


class ManualLineForm(forms.Form):
    kind = forms.ChoiceField(choices=ManualLine.Kind.choices)
    description = forms.CharField(max_length=2000)
    quantity = forms.DecimalField(max_digits=14, decimal_places=4, initial=Decimal(1))
    unit_price = forms.DecimalField(max_digits=12, decimal_places=2)
    category = forms.ModelChoiceField(Category.objects.all(), required=False)
    project = forms.ModelChoiceField(Project.objects.all(), required=False)
    billing_code = forms.CharField(max_length=20, required=False)
    reason = forms.CharField(max_length=300)


def _problems(form: forms.Form) -> str:
    return "; ".join(
        f"{name.replace('_', ' ')}: {error}" if name != "__all__" else error
        for name, errors in form.errors.items()
        for error in errors
    )


def _hours(seconds: int) -> str:
    """5400 s -> "1.5" (4 places at most): what the hours input takes back unchanged."""
    return f"{round_quantity(Fraction(seconds, 3600)).normalize():f}"


class InvoiceAdjustmentViews:
    """Write-downs and manual lines on the invoice page; a mixin of the invoice admin."""

    def get_urls(self):
        views = [
            ("<int:pk>/adjust/<int:entry_id>/", self.adjust_entry_view, "adjust_entry"),
            (
                "<int:pk>/adjust/<int:entry_id>/clear/",
                self.clear_adjustment_view,
                "clear_adjustment",
            ),
            ("<int:pk>/manual-lines/add/", self.add_manual_line_view, "add_manual_line"),
            (
                "<int:pk>/manual-lines/<int:line_id>/remove/",
                self.remove_manual_line_view,
                "remove_manual_line",
            ),
        ]
        own = [
            path(route, self.admin_site.admin_view(view), name=f"invoices_invoice_{name}")
            for route, view, name in views
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, unquote(object_id)) if request.method == "GET" else None
        if invoice is not None:
            extra_context = {**adjustment_context(request, invoice), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- The actions (buttons that post) -----------------------------------------------------

    def _draft_or_refuse(self, request, pk) -> tuple[Invoice | None, HttpResponseRedirect]:
        if request.method != "POST":
            raise PermissionDenied("use the forms on the invoice page")
        if not request.user.has_perm(ADJUST_PERMISSION):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice, pk=pk)
        back = HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]) + SECTION)
        if invoice.is_frozen:
            self.message_user(
                request,
                f"{invoice.label} is {invoice.get_status_display().lower()}; what it bills cannot "
                "be adjusted (void it first)",
                messages.ERROR,
            )
            return None, back
        return invoice, back

    def _done(self, request, before: Invoice, rebuilt: Invoice | None, what: str):
        if rebuilt is None:
            self.message_user(
                request,
                f"{what}; nothing is left to bill, so the draft was removed.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:invoices_invoice_changelist"))
        self.message_user(
            request,
            f"{what}; {rebuilt.label} rebuilt: total {before.total} -> {rebuilt.total} "
            f"{rebuilt.currency}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:invoices_invoice_change", args=[rebuilt.pk]) + SECTION
        )

    def _entry_on(self, invoice: Invoice, entry_id: int):
        link = (
            InvoiceEntry.objects.filter(invoice=invoice, entry_id=entry_id)
            .select_related("entry")
            .first()
        )
        if link is None:
            raise Http404("that entry is not on this invoice")
        return link.entry

    def adjust_entry_view(self, request, pk, entry_id):
        """Write an entry's billed hours down (or up), with a reason; the draft rebuilds."""
        invoice, back = self._draft_or_refuse(request, pk)
        if invoice is None:
            return back
        entry = self._entry_on(invoice, entry_id)
        form = AdjustEntryForm(request.POST)
        if not form.is_valid():
            self.message_user(request, f"Not adjusted: {_problems(form)}", messages.ERROR)
            return back
        try:
            rebuilt = adjust_entry(
                entry=entry,
                user=request.user,
                billed_hours=form.cleaned_data["billed_hours"],
                reason=form.cleaned_data["reason"],
            )
        except BillingError as exc:
            self.message_user(request, f"Not adjusted: {exc}", messages.ERROR)
            return back
        what = (
            f"The entry of {entry.date:%Y-%m-%d} now bills "
            f"{form.cleaned_data['billed_hours'].normalize():f} h"
        )
        return self._done(request, invoice, rebuilt, what)

    def clear_adjustment_view(self, request, pk, entry_id):
        invoice, back = self._draft_or_refuse(request, pk)
        if invoice is None:
            return back
        entry = self._entry_on(invoice, entry_id)
        try:
            rebuilt = clear_adjustment(entry=entry, user=request.user)
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return back
        what = f"The entry of {entry.date:%Y-%m-%d} bills its standard hours again"
        return self._done(request, invoice, rebuilt, what)

    def add_manual_line_view(self, request, pk):
        """Add a fixed fee, expense or credit to this draft's client and period."""
        invoice, back = self._draft_or_refuse(request, pk)
        if invoice is None:
            return back
        form = ManualLineForm(request.POST)
        if not form.is_valid():
            self.message_user(request, f"No line added: {_problems(form)}", messages.ERROR)
            return back
        data = form.cleaned_data
        try:
            rebuilt = add_manual_line(
                client=invoice.client,
                period=Period(invoice.period_start, invoice.period_end),
                user=request.user,
                kind=data["kind"],
                description=data["description"],
                quantity=data["quantity"],
                unit_price=data["unit_price"],
                reason=data["reason"],
                project=invoice.project or data["project"],
                category=data["category"],
                billing_code=data["billing_code"],
            )
        except BillingError as exc:
            self.message_user(request, f"No line added: {exc}", messages.ERROR)
            return back
        what = f"{ManualLine.Kind(data['kind']).label} {data['description']!r} added"
        return self._done(request, invoice, rebuilt, what)

    def remove_manual_line_view(self, request, pk, line_id):
        invoice, back = self._draft_or_refuse(request, pk)
        if invoice is None:
            return back
        line = get_object_or_404(ManualLine, pk=line_id, client_id=invoice.client_id)
        try:
            rebuilt = remove_manual_line(line=line, user=request.user)
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return back
        what = f"{line.get_kind_display()} {line.description!r} removed"
        return self._done(request, invoice, rebuilt, what)


def adjustment_context(request, invoice: Invoice) -> dict:
    """The page's "Adjustments and manual lines" section: the write-downs and write-ups of the
    invoice's entries and its manual lines, each with who and why (three queries)."""
    adjustments = (
        EntryAdjustment.objects.filter(entry__invoice_links__invoice=invoice)
        .select_related("entry", "entry__person", "made_by")
        .order_by("entry__date", "entry__id")
    )
    manual_ids = [
        line["manual_line"]["id"]
        for line in invoice.lines.filter(derivation__has_key="manual_line").values_list(
            "derivation", flat=True
        )
    ]
    manual = (
        ManualLine.objects.filter(pk__in=manual_ids)
        .select_related("category", "project", "made_by")
        .order_by("id")
    )
    return {
        "adjust_can": invoice.status == InvoiceStatus.DRAFT
        and request.user.has_perm(ADJUST_PERMISSION),
        "adjust_entries": [
            {
                "adjustment": adjustment,
                "entry": adjustment.entry,
                "source_hours": _hours(adjustment.entry.duration_seconds),
                "billed_hours": _hours(adjustment.billed_seconds),
                # Section 10.4: the source's hours changed since; the reviewer confirms again.
                "source_changed": adjustment.entry.duration_seconds != adjustment.source_seconds,
                "was_hours": _hours(adjustment.source_seconds),
            }
            for adjustment in adjustments
        ],
        "adjust_manual_lines": list(manual),
        "adjust_kinds": ManualLine.Kind.choices,
        "adjust_projects": []
        if invoice.project_id
        else list(invoice.client.projects.order_by("code", "name").values_list("id", "name")),
    }


# --- Read-only lists --------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Listed for reading: every change goes through the invoice page's services, which
    rebuild the draft; whoever may see invoices may see these."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("invoices.view_invoice") or super().has_view_permission(
            request, obj
        )

    def has_module_permission(self, request):
        return self.has_view_permission(request)


@admin.register(EntryAdjustment)
class EntryAdjustmentAdmin(ReadOnlyAdmin):
    list_display = [
        "entry_date",
        "client",
        "person",
        "source_hours",
        "billed_hours",
        "reason",
        "made_by",
        "made_at",
    ]
    list_filter = ["entry__client", "made_by", "made_at"]
    list_select_related = ["entry", "entry__client", "entry__person", "made_by"]
    search_fields = ["reason", "entry__notes"]
    date_hierarchy = "made_at"
    ordering = ["-made_at"]

    @admin.display(description="date", ordering="entry__date")
    def entry_date(self, obj):
        return obj.entry.date

    @admin.display(ordering="entry__client__name")
    def client(self, obj):
        return obj.entry.client

    @admin.display(ordering="entry__person__name")
    def person(self, obj):
        return obj.entry.person

    @admin.display(description="hours at the source")
    def source_hours(self, obj):
        now = _hours(obj.entry.duration_seconds)
        if obj.entry.duration_seconds != obj.source_seconds:
            return f"{now} (was {_hours(obj.source_seconds)}: confirm again)"
        return now

    @admin.display(description="billed hours", ordering="billed_seconds")
    def billed_hours(self, obj):
        return _hours(obj.billed_seconds)


class BilledFilter(admin.SimpleListFilter):
    title = "billed"
    parameter_name = "billed"

    def lookups(self, request, model_admin):
        return [("yes", "On an approved invoice"), ("no", "Not yet")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(invoice__status=InvoiceStatus.APPROVED)
        if self.value() == "no":
            return queryset.exclude(invoice__status=InvoiceStatus.APPROVED)
        return queryset


@admin.register(ManualLine)
class ManualLineAdmin(ReadOnlyAdmin):
    list_display = [
        "period_start",
        "client",
        "project",
        "kind",
        "description",
        "quantity",
        "unit_price",
        "category",
        "billing_code",
        "reason",
        "made_by",
        "invoice",
    ]
    list_filter = ["kind", BilledFilter, "client", "period_start"]
    list_select_related = [
        "client",
        "project",
        "category",
        "made_by",
        "invoice",
        "invoice__client",
        "invoice__project",
    ]
    search_fields = ["description", "reason", "client__name"]
