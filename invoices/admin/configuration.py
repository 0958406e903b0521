"""Billing configuration in the admin: the firm (and the whole rules file, uploaded with a
preview of what saving it changes), categories, classification rules (with a
what-if "Preview" before saving), rates and client policies (with the client's billing codes,
rate multipliers and caps beside the policy)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from invoices.admin.review_queue import stale_drafts_notice
from invoices.classification import classify_entries, entries_to_classify
from invoices.core.classify import NotesPatternRefused, compile_notes_pattern
from invoices.core.rates import RateRow, find_overlaps
from invoices.drafting import Period
from invoices.models import (
    BillingCode,
    Cap,
    Category,
    ClassificationRule,
    ClientPolicy,
    Firm,
    Rate,
    RateMultiplier,
)
from invoices.overview import default_period
from invoices.review import stale_drafts
from invoices.rule_preview import preview_rule, preview_rules_file
from invoices.rulesfile import RulesFileInvalid, import_rules
from timesheets.models import Client


class RulesFileForm(forms.Form):
    file = forms.FileField(required=False, help_text="The firm's rules file (YAML, UTF-8).")
    # The previewed file's text, sent back by "Save" so that what is saved is what was seen.
    text = forms.CharField(required=False, widget=forms.HiddenInput, strip=False)
    prune = forms.BooleanField(
        required=False,
        help_text="Delete the rows in the file's scope that it does not list (as --prune).",
    )

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_RULES_FILE_BYTES:
                raise ValidationError(
                    f"the file has {upload.size} bytes; a rules file is at most "
                    f"{MAX_RULES_FILE_BYTES}"
                )
            try:
                data["text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError("the file is not UTF-8 text; save it as UTF-8") from None
        if not data.get("text"):
            raise ValidationError("choose a rules file")
        return data


MAX_RULES_FILE_BYTES = 2_000_000


@admin.register(Firm)
class FirmAdmin(admin.ModelAdmin):
    """The firm's settings, and the whole rules file uploaded with a preview: which open
    invoices' totals and which entries' categories saving it would change (the real import,
    rolled back: `invoices.rule_preview.preview_rules_file`), then Save."""

    list_display = [
        "name",
        "currency",
        "default_rate",
        "approver_must_differ_from_corrector",
        "approvers_need_two_factor",
    ]
    change_list_template = "admin/invoices/firm/change_list.html"

    def has_add_permission(self, request):
        return not Firm.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view(self.rules_file_view)
        return [path("rules-file/", view, name="invoices_firm_rules_file"), *super().get_urls()]

    def rules_file_view(self, request):
        # The file holds the firm's own settings too, which only those who may change the
        # firm change (the roles leave that to a superuser).
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = RulesFileForm(request.POST or None, request.FILES or None)
        preview = None
        if request.method == "POST" and form.is_valid():
            text, prune = form.cleaned_data["text"], form.cleaned_data["prune"]
            try:
                if "_save" in request.POST:
                    summary = import_rules(text, prune=prune)
                    self.message_user(
                        request,
                        format_html(
                            "Rules file saved: {}{}",
                            "; ".join(summary.lines()[:11]),
                            stale_drafts_notice(stale_drafts().count()),
                        ),
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:invoices_firm_rules_file"))
                preview = preview_rules_file(text=text, prune=prune)
                form = RulesFileForm(initial={"text": text, "prune": prune})
            except RulesFileInvalid as rejection:
                count = len(rejection.errors)
                form.add_error(
                    None,
                    f"{count} error{'s' if count != 1 else ''}; nothing was changed: "
                    + "; ".join(str(error) for error in rejection.errors),
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a rules file",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
        }
        return TemplateResponse(request, "admin/invoices/firm/rules_file.html", context)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "billable", "billing_code"]
    search_fields = ["key", "name"]


class ClassificationRuleForm(forms.ModelForm):
    # Not stored: which month "Preview" re-classifies and re-prices.
    preview_month = forms.CharField(
        required=False,
        max_length=7,
        help_text="YYYY-MM: the month that Preview tries the rule on (default: the latest "
        "month with invoices). Preview changes nothing; Save applies the rule.",
    )

    class Meta:
        model = ClassificationRule
        fields = ["client", "priority", "task", "notes_regex", "project", "category"]

    def clean_preview_month(self):
        text = self.cleaned_data["preview_month"].strip()
        try:
            return Period.month(text) if text else default_period()
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def clean_notes_regex(self):
        pattern = self.cleaned_data["notes_regex"]
        if pattern:
            # The engine classification runs (RE2), so the admin refuses what the rules file
            # refuses, in the same words.
            try:
                compile_notes_pattern(pattern)
            except NotesPatternRefused as refused:
                raise ValidationError(str(refused)) from None
        return pattern

    def clean(self):
        data = super().clean()
        if not (data.get("task") or data.get("notes_regex") or data.get("project")):
            raise ValidationError("a rule needs at least one of: task, notes regex, project")
        return data


@admin.register(ClassificationRule)
class ClassificationRuleAdmin(admin.ModelAdmin):
    """Rules with validation (the regex compiles, a matcher is set) and a "Preview" button
    that shows, before saving, which of a month's entries the rule matches and how each
    invoice total would change (`invoices.rule_preview`; nothing is written)."""

    form = ClassificationRuleForm
    list_display = ["id", "client", "priority", "task", "notes_regex", "project", "category"]
    list_filter = ["client", "category"]
    list_select_related = ["client", "project", "category"]
    ordering = ["client__name", "priority", "id"]
    change_form_template = "admin/invoices/classificationrule/change_form.html"

    def save_model(self, request, obj, form, change):
        """Saved, then the entries the rule may change are classified again in the admin's
        transaction: the drafts they are on are marked stale with it (the classification
        triggers), and the message says how many and offers to rebuild them all."""
        clients = {obj.client_id}
        if change:
            clients |= set(
                ClassificationRule.objects.filter(pk=obj.pk).values_list("client_id", flat=True)
            )
        super().save_model(request, obj, form, change)
        self._follow_rules(request, clients)

    def delete_model(self, request, obj):
        clients = {obj.client_id}
        super().delete_model(request, obj)
        self._follow_rules(request, clients)

    def delete_queryset(self, request, queryset):
        clients = set(queryset.values_list("client_id", flat=True))
        super().delete_queryset(request, queryset)
        self._follow_rules(request, clients)

    def _follow_rules(self, request, client_ids: set[int | None]) -> None:
        # A firm-wide rule (no client) may change any client's entries.
        scope = None if None in client_ids else sorted(client_ids)
        summary = classify_entries(entries_to_classify(client_ids=scope))
        stale = stale_drafts()
        if scope is not None:
            stale = stale.filter(client_id__in=scope)
        self.message_user(
            request,
            format_html(
                "{} entr{} re-checked with the rules as saved{}",
                summary.entries,
                "y" if summary.entries == 1 else "ies",
                stale_drafts_notice(stale.count()),
            ),
            messages.SUCCESS,
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_preview" in request.POST:
            return self.preview_view(request, object_id, extra_context)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def preview_view(self, request, object_id, extra_context=None):
        """The change form again, bound to what was typed, with the what-if below it. The
        edited rule is only an unsaved instance: `form.save(commit=False)` writes nothing."""
        add = object_id is None
        obj = None if add else self.get_object(request, unquote(object_id))
        if not add and obj is None:
            raise Http404
        allowed = (
            self.has_add_permission(request) if add else self.has_change_permission(request, obj)
        )
        if not allowed:
            raise PermissionDenied
        fieldsets = self.get_fieldsets(request, obj)
        form = self.get_form(request, obj, change=not add, fields=flatten_fieldsets(fieldsets))(
            request.POST, instance=obj
        )
        preview = None
        if form.is_valid():
            preview = preview_rule(
                rule=form.save(commit=False), period=form.cleaned_data["preview_month"]
            )
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),
            {},
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": ("Add" if add else "Change") + " classification rule (preview)",
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "rule_preview": preview,
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=add, change=not add, obj=obj)


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

    def save_related(self, request, form, formsets, change):
        """After the policy and its codes, multipliers and caps are saved (the database
        marks the client's drafts stale in the same transaction): say so, and offer to
        rebuild them all."""
        super().save_related(request, form, formsets, change)
        client = form.instance.client
        stale = stale_drafts().filter(client=client).count()
        if stale:
            self.message_user(
                request,
                format_html("{}'s policy saved{}", client.name, stale_drafts_notice(stale)),
                messages.WARNING,
            )

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
