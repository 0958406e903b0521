"""The review desk: billing configuration, classifications and invoices in the Django admin.

Every write goes through the same services as the commands (drafting, approval, review); the
admin only collects input and turns named errors into messages.
"""

from __future__ import annotations

import re
from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from invoices.approval import InvalidTransition, approve_invoice, void_invoice
from invoices.core.rates import RateRow, find_overlaps
from invoices.drafting import DraftingError, Period, draft_invoices, rebuild_invoice
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    Classification,
    ClassificationRule,
    ClientPolicy,
    Firm,
    Invoice,
    InvoiceEntry,
    InvoiceEvent,
    InvoiceLine,
    InvoiceStatus,
    Rate,
    RateMultiplier,
)
from invoices.review import CorrectionRefused, correct_entry
from timesheets.models import Client


def _hours(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}"


# --- Configuration ------------------------------------------------------------------------


@admin.register(Firm)
class FirmAdmin(admin.ModelAdmin):
    list_display = ["name", "currency", "default_rate"]

    def has_add_permission(self, request):
        return not Firm.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "billable", "billing_code"]
    search_fields = ["key", "name"]


class ClassificationRuleForm(forms.ModelForm):
    class Meta:
        model = ClassificationRule
        fields = ["client", "priority", "task", "notes_regex", "project", "category"]

    def clean_notes_regex(self):
        pattern = self.cleaned_data["notes_regex"]
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError(f"not a valid regular expression: {exc}") from exc
        return pattern

    def clean(self):
        data = super().clean()
        if not (data.get("task") or data.get("notes_regex") or data.get("project")):
            raise ValidationError("a rule needs at least one of: task, notes regex, project")
        return data


@admin.register(ClassificationRule)
class ClassificationRuleAdmin(admin.ModelAdmin):
    form = ClassificationRuleForm
    list_display = ["id", "client", "priority", "task", "notes_regex", "project", "category"]
    list_filter = ["client", "category"]
    list_select_related = ["client", "project", "category"]
    ordering = ["client__name", "priority", "id"]


class RateForm(forms.ModelForm):
    class Meta:
        model = Rate
        fields = ["client", "project", "person", "role", "rate", "valid_from", "valid_to"]

    def clean(self):
        data = super().clean()
        project, client = data.get("project"), data.get("client")
        if data.get("person") and data.get("role"):
            raise ValidationError("a rate names a person or a role, not both")
        if project is not None:
            if client is not None and client != project.client:
                raise ValidationError(f"project {project} belongs to {project.client}")
            data["client"] = self.instance.client = project.client
        if (
            data.get("valid_from")
            and data.get("valid_to")
            and data["valid_from"] > data["valid_to"]
        ):
            raise ValidationError("'from' is after 'to'")
        if "rate" in data:
            self._check_overlap(data)
        return data

    def _check_overlap(self, data) -> None:
        """Say which row conflicts (the exclusion constraint would only say that one does)."""
        mine = RateRow(
            id=None,
            rate=data["rate"],
            client=data["client"].id if data.get("client") else None,
            project=data["project"].id if data.get("project") else None,
            person=data["person"].id if data.get("person") else None,
            role=data.get("role") or "",
            valid_from=data.get("valid_from"),
            valid_to=data.get("valid_to"),
        )
        others = {
            rate.pk: rate
            for rate in Rate.objects.exclude(pk=self.instance.pk).filter(
                client=data.get("client"),
                project=data.get("project"),
                person=data.get("person"),
                role__iexact=mine.role,
            )
        }
        rows = [mine] + [
            RateRow(
                id=r.pk,
                rate=r.rate,
                client=r.client_id,
                project=r.project_id,
                person=r.person_id,
                role=r.role,
                valid_from=r.valid_from,
                valid_to=r.valid_to,
            )
            for r in others.values()
        ]
        for first, second in find_overlaps(rows):
            if first is mine:
                other = others[second.id]
                raise ValidationError(
                    f"overlaps rate #{other.pk} ({other.get_level_display()}, {other.rate}, "
                    f"{other.valid_from or 'open'}..{other.valid_to or 'open'}) for the same "
                    "target; end that row first or change the dates"
                )


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    form = RateForm
    list_display = [
        "id",
        "level_label",
        "client",
        "project",
        "person",
        "role",
        "rate",
        "valid_from",
        "valid_to",
    ]
    list_filter = ["client"]
    list_select_related = ["client", "project", "person"]

    @admin.display(description="level")
    def level_label(self, obj):
        return obj.get_level_display()


class BillingCodeInline(admin.TabularInline):
    model = BillingCode
    extra = 0


class RateMultiplierInline(admin.TabularInline):
    model = RateMultiplier
    extra = 0


class CapInline(admin.TabularInline):
    model = Cap
    extra = 0


@admin.register(ClientPolicy)
class ClientPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "client",
        "currency",
        "rounding_increment_minutes",
        "rounding_mode",
        "rounding_locus",
        "group_lines_by",
        "discount_percent",
        "invoice_per_project",
    ]
    list_select_related = ["client"]
    filter_horizontal = ["non_billable_categories"]

    def get_inline_instances(self, request, obj=None):
        # Codes, multipliers and caps belong to the client; edit them beside its policy.
        if obj is None:
            return []
        return [
            inline(Client, self.admin_site)
            for inline in (BillingCodeInline, RateMultiplierInline, CapInline)
        ]

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        kwargs["instance"] = obj.client
        return kwargs

    def get_formsets_with_inlines(self, request, obj=None):
        for inline in self.get_inline_instances(request, obj):
            yield inline.get_formset(request, obj.client if obj else None), inline


# --- Classification -----------------------------------------------------------------------


class CorrectionForm(forms.ModelForm):
    class Meta:
        model = Classification
        fields = ["manual_category", "manual_billable", "manual_description"]
        labels = {
            "manual_category": "Category (your decision)",
            "manual_billable": "Billable (your decision)",
            "manual_description": "Client-facing description (your wording)",
        }


@admin.register(Classification)
class ClassificationAdmin(admin.ModelAdmin):
    """Every entry's classification: what was decided, by which tier, and why; a reviewer's
    correction here is tier 1 and rebuilds the draft that holds the entry."""

    form = CorrectionForm
    list_display = [
        "entry_date",
        "entry_person",
        "client",
        "entry_notes",
        "category",
        "tier_label",
        "confidence",
        "billable",
        "billing_code",
        "needs_review",
        "review_reason",
    ]
    list_filter = ["needs_review", "tier", "billable", "entry__client", "category"]
    list_select_related = ["entry", "entry__person", "entry__client", "category"]
    search_fields = ["entry__notes", "description"]
    readonly_fields = [
        "entry",
        "entry_notes",
        "category",
        "description",
        "tier_label",
        "confidence",
        "billable",
        "billing_code",
        "needs_review",
        "review_reason",
        "model_category",
        "model_description",
        "model_confidence",
        "model_note",
        "manual_by",
        "manual_at",
    ]
    fieldsets = [
        ("Entry", {"fields": ["entry", "entry_notes"]}),
        (
            "Decision",
            {
                "fields": [
                    "category",
                    "description",
                    "tier_label",
                    "confidence",
                    "billable",
                    "billing_code",
                    "needs_review",
                    "review_reason",
                ]
            },
        ),
        (
            "Your correction (always wins)",
            {
                "fields": [
                    "manual_category",
                    "manual_billable",
                    "manual_description",
                    "manual_by",
                    "manual_at",
                ]
            },
        ),
        (
            "Language model",
            {
                "classes": ["collapse"],
                "fields": ["model_category", "model_description", "model_confidence", "model_note"],
            },
        ),
    ]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.entry.locked:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description="date", ordering="entry__date")
    def entry_date(self, obj):
        return obj.entry.date

    @admin.display(description="person", ordering="entry__person__name")
    def entry_person(self, obj):
        return obj.entry.person.name

    @admin.display(description="client", ordering="entry__client__name")
    def client(self, obj):
        return obj.entry.client.name

    @admin.display(description="original note")
    def entry_notes(self, obj):
        return obj.entry.notes

    @admin.display(description="decided by")
    def tier_label(self, obj):
        return obj.source_label

    def save_model(self, request, obj, form, change):
        try:
            correct_entry(
                entry=obj.entry,
                user=request.user,
                category=form.cleaned_data["manual_category"],
                billable=form.cleaned_data["manual_billable"],
                description=form.cleaned_data["manual_description"],
            )
        except (CorrectionRefused, DraftingError) as exc:
            self.message_user(request, str(exc), messages.ERROR)


# --- Invoices -----------------------------------------------------------------------------


class FlagFilter(admin.SimpleListFilter):
    title = "flag"
    parameter_name = "flag"

    def lookups(self, request, model_admin):
        from invoices.models import Flag

        return Flag.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(flags__contains=[self.value()])
        return queryset


class DraftPeriodForm(forms.Form):
    month = forms.CharField(required=False, help_text="YYYY-MM, e.g. 2026-10")
    start = forms.DateField(required=False, label="or from")
    end = forms.DateField(required=False, label="to")
    clients = forms.ModelMultipleChoiceField(
        Client.objects.all(), required=False, help_text="None selected: every client."
    )

    def clean(self):
        data = super().clean()
        try:
            if data.get("month") and not (data.get("start") or data.get("end")):
                data["period"] = Period.month(data["month"])
            elif data.get("start") and data.get("end") and not data.get("month"):
                data["period"] = Period(data["start"], data["end"])
            else:
                raise ValidationError("give a month, or both a first and a last day")
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        return data


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fields = ["position", "kind", "description", "billing_code", "quantity", "unit_price", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
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

    @admin.display(description="number", ordering="id")
    def number_label(self, obj):
        return obj.number

    @admin.display(description="flags")
    def flag_list(self, obj):
        from invoices.models import Flag

        return ", ".join(Flag(f).label for f in obj.flags) or "-"

    @admin.display(description="pending", ordering="pending")
    def pending_count(self, obj):
        return obj.pending

    def get_urls(self):
        own = [
            path(
                "draft/", self.admin_site.admin_view(self.draft_view), name="invoices_invoice_draft"
            ),
            path(
                "<int:pk>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="invoices_invoice_approve",
            ),
            path(
                "<int:pk>/void/",
                self.admin_site.admin_view(self.void_view),
                name="invoices_invoice_void",
            ),
            path(
                "<int:pk>/rebuild/",
                self.admin_site.admin_view(self.rebuild_view),
                name="invoices_invoice_rebuild",
            ),
        ]
        return own + super().get_urls()

    def _require_post(self, request):
        if request.method != "POST":
            raise PermissionDenied("use the buttons on the invoice page")

    def approve_view(self, request, pk):
        self._require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        try:
            approve_invoice(invoice=invoice, user=request.user)
            self.message_user(request, f"{invoice.number} approved.", messages.SUCCESS)
        except InvalidTransition as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def void_view(self, request, pk):
        self._require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        try:
            void_invoice(
                invoice=invoice, user=request.user, reason=request.POST.get("reason", "")[:500]
            )
            self.message_user(
                request,
                f"{invoice.number} voided; its entries are free for the next draft.",
                messages.SUCCESS,
            )
        except InvalidTransition as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def rebuild_view(self, request, pk):
        self._require_post(request)
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
            f"{rebuilt.number} rebuilt: total {rebuilt.total} {rebuilt.currency}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[rebuilt.pk]))

    def draft_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = DraftPeriodForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            clients = form.cleaned_data["clients"]
            try:
                summary = draft_invoices(
                    period=form.cleaned_data["period"],
                    client_ids=[c.id for c in clients] if clients else None,
                    user=request.user,
                )
            except DraftingError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, str(summary), messages.SUCCESS)
                period = summary.period
                return HttpResponseRedirect(
                    reverse("admin:invoices_invoice_changelist")
                    + f"?period_start__gte={period.start}&period_start__lte={period.end}"
                )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Draft invoices for a period",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/invoices/invoice/draft.html", context)

    @admin.action(description="Rebuild selected drafts")
    def rebuild_selected(self, request, queryset):
        rebuilt = 0
        for invoice in queryset.filter(status=InvoiceStatus.DRAFT).order_by("id"):
            try:
                rebuild_invoice(invoice, user=request.user)
                rebuilt += 1
            except DraftingError as exc:
                self.message_user(request, f"{invoice.number}: {exc}", messages.ERROR)
        self.message_user(request, f"{rebuilt} draft(s) rebuilt.", messages.SUCCESS)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, object_id)
        extra = {}
        if invoice is not None:
            extra = self._review_context(request, invoice)
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def _review_context(self, request, invoice: Invoice) -> dict:
        links = (
            InvoiceEntry.objects.filter(invoice=invoice)
            .select_related(
                "entry", "entry__person", "entry__classification", "entry__classification__category"
            )
            .order_by("entry__date", "entry__person__name", "entry__id")
        )
        by_line, pending = defaultdict(list), []
        for link in links:
            row = {
                "link": link,
                "entry": link.entry,
                "classification": getattr(link.entry, "classification", None),
                "raw": _hours(link.raw_seconds),
                "billed": _hours(link.billed_seconds)
                if link.state == InvoiceEntry.State.BILLED
                else "",
            }
            if link.line_id is None:
                pending.append(row)
            else:
                by_line[link.line_id].append(row)
        lines = [
            {"line": line, "entries": by_line.get(line.id, [])}
            for line in invoice.lines.select_related("category", "person", "project")
        ]
        user = request.user
        return {
            "review_lines": lines,
            "review_pending": pending,
            "review_events": invoice.events.select_related("actor")[:50],
            "can_approve": invoice.status == InvoiceStatus.DRAFT
            and user.has_perm("invoices.approve_invoice"),
            "can_void": invoice.status != InvoiceStatus.VOID
            and user.has_perm("invoices.void_invoice"),
            "can_rebuild": invoice.status == InvoiceStatus.DRAFT
            and user.has_perm("invoices.change_invoice"),
            "invoice": invoice,
        }

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["show_save"] = context["show_save_and_continue"] = False
        context["show_save_and_add_another"] = context["show_delete"] = False
        return super().render_change_form(request, context, add, change, form_url, obj)

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
