"""Fixed fees and their milestones, retainers and their ledger, engagement caps (billing
semantics section 13). The ledger is read-only: its rows tied to invoices are written by
approval and void; staff add only top-ups, through `top_up_retainer`. Saving any of these
terms marks the client's drafts stale, as a change of its policy does."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from invoices.engagement_ledger import mark_client_drafts_stale, top_up_retainer
from invoices.models import EngagementCap, FixedFee, Milestone, Retainer, RetainerEntry


class MarksDraftsStale:
    """Saving or deleting terms marks the client's drafts stale."""

    @staticmethod
    def client_of(obj) -> int:
        return obj.project.client_id if hasattr(obj, "project") else obj.client_id

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        mark_client_drafts_stale(
            client_id=self.client_of(obj), reason=f"{obj._meta.verbose_name} changed"
        )

    def delete_model(self, request, obj):
        client_id = self.client_of(obj)
        super().delete_model(request, obj)  # type: ignore[misc]
        mark_client_drafts_stale(client_id=client_id, reason=f"{obj._meta.verbose_name} deleted")


class MilestoneInline(admin.TabularInline):
    model = Milestone
    extra = 1
    fields = ("name", "amount", "percent", "due_on", "billed_on")
    readonly_fields = ("billed_on",)


@admin.register(FixedFee)
class FixedFeeAdmin(MarksDraftsStale, admin.ModelAdmin):
    list_display = ("project", "fee", "show_time")
    list_select_related = ("project",)
    autocomplete_fields = ("project",)
    inlines = [MilestoneInline]


class LedgerInline(admin.TabularInline):
    model = RetainerEntry
    fk_name = "client"
    extra = 0
    can_delete = False
    fields = ("on_date", "kind", "amount", "invoice", "note", "made_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Retainer)
class RetainerAdmin(MarksDraftsStale, admin.ModelAdmin):
    list_display = ("client", "monthly_amount", "rollover")
    list_select_related = ("client",)
    autocomplete_fields = ("client",)


class TopUpForm(forms.ModelForm):
    """The one row staff add: a top-up (positive, for a client with a retainer)."""

    class Meta:
        model = RetainerEntry
        fields = ("client", "amount", "on_date", "note")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.kind = RetainerEntry.Kind.TOP_UP

    def clean(self):
        data = super().clean()
        client, amount = data.get("client"), data.get("amount")
        if amount is not None and amount <= 0:
            self.add_error("amount", f"a top-up adds to the balance: {amount} is not positive")
        if client is not None and not Retainer.objects.filter(client=client).exists():
            self.add_error("client", f"{client} has no retainer; add one first")
        return data


@admin.register(RetainerEntry)
class RetainerEntryAdmin(admin.ModelAdmin):
    """The ledger, read-only; "Add" is the top-up."""

    list_display = ("client", "on_date", "kind", "amount", "invoice", "note", "made_by")
    list_filter = ("kind",)
    list_select_related = ("client", "invoice", "made_by")
    search_fields = ("client__name", "note")
    fields = ("client", "amount", "on_date", "note")
    form = TopUpForm

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.fields
        return ("client", "kind", "amount", "on_date", "invoice", "note", "made_by", "made_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        # The form checked what the service refuses.
        saved = top_up_retainer(
            client=obj.client,
            amount=obj.amount,
            on_date=obj.on_date,
            note=obj.note,
            user=request.user,
        )
        obj.pk = saved.pk


@admin.register(EngagementCap)
class EngagementCapAdmin(MarksDraftsStale, admin.ModelAdmin):
    list_display = ("client", "project", "hours", "amount", "starts_on", "ends_on")
    list_select_related = ("client", "project")
    autocomplete_fields = ("client", "project")
