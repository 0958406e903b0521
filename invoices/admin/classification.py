"""Every entry's classification in the admin: what was decided, by which tier and why, and a
reviewer's correction (tier 1), which is memory at once for the client's identical notes and
rebuilds the draft that holds the entry. The review queue (`review_queue`) is served here too."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from invoices.admin.review_queue import ReviewQueueViews
from invoices.drafting import DraftingError
from invoices.models import Classification
from invoices.review import CorrectionRefused, correct_entry


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
        except (CorrectionRefused, DraftingError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
