"""LEDES on the invoice pages of the admin: a download of an approved invoice's LEDES 1998B
file (a URL, a button in the pre-send section of the review page, and an action on the
invoice list), and the pre-send checks, which the review page shows through the template
`admin/invoices/ledes_presend.html` (its tag is `invoices.templatetags.ledes`).

Like the QuickBooks admin, this wraps the invoice admin registered before it (importing
`invoices.admin.quickbooks` first, so the order of imports in the package does not matter) and
registers the result; everything calls `invoices.ledes`, and a refusal becomes a message.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from invoices.admin import quickbooks  # noqa: F401 (registers the invoice admin this extends)
from invoices.ledes import LedesRefused, build_ledes
from invoices.models import Invoice, InvoiceStatus


def ledes_filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.pk}'}.ledes1998b.txt"


class LedesViews:
    """The download view and the list action; a mixin over the registered invoice admin."""

    def get_urls(self):
        download = path(
            "<int:pk>/ledes/",
            self.admin_site.admin_view(self.ledes_view),
            name="invoices_invoice_ledes",
        )
        return [download, *super().get_urls()]

    def ledes_view(self, request, pk):
        invoice = get_object_or_404(Invoice, pk=pk)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        try:
            text = build_ledes(invoice=invoice)
        except LedesRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        response = HttpResponse(text, content_type="text/plain; charset=us-ascii")
        response["Content-Disposition"] = f'attachment; filename="{ledes_filename(invoice)}"'
        return response

    @admin.action(description="Download the LEDES 1998B file (one approved invoice)")
    def download_ledes(self, request, queryset):
        invoices = list(queryset[:2])
        if len(invoices) != 1 or invoices[0].status != InvoiceStatus.APPROVED:
            self.message_user(
                request,
                "Choose exactly one approved invoice: a LEDES file holds one invoice here.",
                messages.ERROR,
            )
            return None
        return self.ledes_view(request, invoices[0].pk)


_registered = type(admin.site._registry[Invoice])


class LedesInvoiceAdmin(LedesViews, _registered):  # type: ignore[valid-type,misc]
    actions = [*(_registered.actions or []), "download_ledes"]


admin.site.unregister(Invoice)
admin.site.register(Invoice, LedesInvoiceAdmin)
