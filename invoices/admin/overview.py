"""The month end in the admin: the overview of a month (per client: entries, tiers, pending,
totals, flags, status) and drafting the invoices of a period.

`MonthEndViews` is mixed into `invoices.admin.invoices.InvoiceAdmin`, which lists the URLs.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from invoices.drafting import DraftingError, Period, draft_invoices
from invoices.overview import default_period, month_overview
from timesheets.models import Client


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


class MonthEndViews:
    """The month-end overview (`month_view`) and "Draft invoices for a period" (`draft_view`);
    a mixin of `InvoiceAdmin`."""

    def month_view(self, request):
        """The month-end overview: per client, entries, tiers, pending, totals, flags, status."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        month = request.GET.get("month", "").strip()
        try:
            period = Period.month(month) if month else default_period()
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            period = default_period()
        overview = month_overview(period=period)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Month end {period.start:%B %Y}",
            "opts": self.model._meta,
            "overview": overview,
            "month": f"{period.start:%Y-%m}",
            "previous_month": f"{_shift_month(period.start, -1):%Y-%m}",
            "next_month": f"{_shift_month(period.start, 1):%Y-%m}",
            "can_draft": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/invoices/invoice/month_overview.html", context)

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


def _shift_month(day, months: int):
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1, day=1)
