"""Tax codes and their overrides in the admin (billing semantics section 12). A client's default
code is on its client policy; per line or per invoice is on the firm. Editing a code changes
drafts only when they are rebuilt: a draft keeps the code, base and tax it was drafted with."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from invoices.models import TaxCode, TaxOverride


class TaxCodeForm(forms.ModelForm):
    class Meta:
        model = TaxCode
        fields = ["name", "rate", "compound", "applies_after", "quickbooks_id"]

    def clean_applies_after(self) -> TaxCode | None:
        """A code charged after another must not end up after itself (12.1)."""
        earlier = self.cleaned_data.get("applies_after")
        seen = {self.instance.pk} if self.instance.pk else set()
        current = earlier
        while current is not None:
            if current.pk in seen:
                raise forms.ValidationError(
                    f"{current.name} already applies after this code: a chain of codes cannot loop"
                )
            seen.add(current.pk)
            current = current.applies_after
        return earlier


@admin.register(TaxCode)
class TaxCodeAdmin(admin.ModelAdmin):
    form = TaxCodeForm
    list_display = ["name", "rate_shown", "compound", "applies_after", "quickbooks_id"]
    list_select_related = ["applies_after"]
    search_fields = ["name", "quickbooks_id"]
    ordering = ["name"]

    @admin.display(description="rate", ordering="rate")
    def rate_shown(self, obj: TaxCode) -> str:
        return "per QuickBooks" if obj.rate is None else f"{obj.rate.normalize():f}%"


@admin.register(TaxOverride)
class TaxOverrideAdmin(admin.ModelAdmin):
    list_display = ["__str__", "category", "line_kind", "tax_code"]
    list_select_related = ["category", "tax_code"]
