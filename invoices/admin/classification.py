"""Every entry's classification in the admin: what was decided, by which tier and why, and a
reviewer's correction (tier 1), which is memory at once for the client's identical notes and
rebuilds the draft that holds the entry. The review queue (`review_queue`) is served here too."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.text import Truncator

from invoices.admin.review_queue import ReviewQueueViews, stale_drafts_notice
from invoices.errors import BillingError
from invoices.models import Category, Classification
from invoices.review import CorrectionRefused, correct_entry, decide_entries, stale_drafts
from timesheets.models import TimeEntry

# The list fits a 1400 px screen: long notes and reasons are cut (the entry's page has them).
LIST_TEXT_CHARS = 50


class BulkDecisionForm(forms.Form):
    """One decision for the chosen entries (the "Decide selected entries" action)."""

    category = forms.ModelChoiceField(Category.objects.order_by("name"), required=False)
    billable = forms.NullBooleanField(
        required=False,
        widget=forms.Select(
            choices=[("unknown", "by default"), ("true", "billable"), ("false", "not billable")]
        ),
    )
    description = forms.CharField(
        required=False, max_length=2000, label="Client-facing wording (optional)"
    )

    def clean(self):
        data = super().clean()
        if data.get("category") is None and data.get("billable") is None:
            raise forms.ValidationError("choose a category, or mark the entries not billable")
        return data


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
class ClassificationAdmin(ReviewQueueViews, admin.ModelAdmin):
    """Every entry's classification: what was decided, by which tier, and why; a reviewer's
    correction here is tier 1 and rebuilds the draft that holds the entry."""

    form = CorrectionForm
    # Fits a 1400 px screen beside the admin's menus: the tier and its confidence share a
    # column, and a pending entry's reason is that column's tooltip (and the review queue's).
    list_display = [
        "entry_date",
        "entry_person",
        "client",
        "short_notes",
        "category",
        "decided_by",
        "billable",
    ]
    actions = ["decide_selected", "mark_not_billable"]
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
        "memory_note",
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
                    "memory_note",
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
        return f"{obj.entry.date:%Y-%m-%d}"

    @admin.display(description="person", ordering="entry__person__name")
    def entry_person(self, obj):
        return obj.entry.person.name

    @admin.display(description="client", ordering="entry__client__name")
    def client(self, obj):
        return obj.entry.client.name

    @admin.display(description="original note")
    def entry_notes(self, obj):
        return obj.entry.notes

    @admin.display(description="original note")
    def short_notes(self, obj):
        return Truncator(obj.entry.notes).chars(LIST_TEXT_CHARS)

    @admin.display(description="needs review because", ordering="needs_review")
    def short_reason(self, obj):
        return Truncator(obj.review_reason).chars(LIST_TEXT_CHARS) if obj.needs_review else ""

    @admin.display(description="decided by", ordering="tier")
    def decided_by(self, obj):
        if obj.needs_review:
            return format_html('<span title="{}">pending</span>', obj.review_reason)
        if not obj.tier:
            return "undecided (bills nothing)"
        label = obj.source_label
        if obj.tier == Classification.Tier.MEMORY and obj.memory_note:
            label = f"similar to '{Truncator(obj.memory_note).chars(30)}'"
        return f"{label} ({obj.confidence})" if obj.confidence is not None else label

    @admin.display(description="decided by")
    def tier_label(self, obj):
        if obj.tier == Classification.Tier.MEMORY and obj.memory_note:
            # Similar memory (section 2.3): the review reason says which note, and how close.
            return f"{obj.source_label}: {obj.review_reason}"
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
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)

    def _decide(self, request, queryset, **decision) -> None:
        if not request.user.has_perm("invoices.change_classification"):
            raise PermissionDenied
        chosen = list(queryset.values_list("entry_id", flat=True))
        try:
            decided = decide_entries(entry_ids=chosen, user=request.user, **decision)
        except CorrectionRefused as exc:
            self.message_user(request, f"Not decided: {exc}", messages.ERROR)
            return
        frozen = len(chosen) - len(decided)
        # The decided entries' clients: their twins follow by memory, on any of their drafts.
        clients = TimeEntry.objects.filter(id__in=decided).values("client_id")
        self.message_user(
            request,
            format_html(
                "{} entr{} decided{}{}",
                len(decided),
                "y" if len(decided) == 1 else "ies",
                f" ({frozen} on approved invoices left as billed)" if frozen else "",
                stale_drafts_notice(stale_drafts().filter(client_id__in=clients).count()),
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Decide selected entries (category, billable, wording)…")
    def decide_selected(self, request, queryset):
        """One decision for the chosen entries, with the memory it makes: an intermediate
        page asks for it, like Django's delete confirmation."""
        form = BulkDecisionForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            self._decide(request, queryset, **form.cleaned_data)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Decide {queryset.count()} selected entries",
            "opts": self.model._meta,
            "form": form,
            "queryset": queryset.select_related("entry", "entry__client")[:200],
            "count": queryset.count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(
            request, "admin/invoices/classification/decide_selected.html", context
        )

    @admin.action(description="Mark selected entries not billable")
    def mark_not_billable(self, request, queryset):
        self._decide(request, queryset, category=None, billable=False, description="")
