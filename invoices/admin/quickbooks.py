"""QuickBooks on the invoice pages of the admin: a push status column, actions on one or many
invoices, and a QuickBooks section on the invoice page with the push history, errors and the
buttons that apply (send, approve and send, retry, push again after a void there, send anyway
with a reason while its hours are on an earlier open QuickBooks invoice, void in QuickBooks an
invoice voided here).

Everything calls the services in `invoices.quickbooks`; this module only collects input and
turns named errors into messages. Sending needs a two-factor login when the firm requires one
for approvers, as approving and voiding do (`invoices.two_factor`). The connection and mapping
pages are `invoices.admin.quickbooks_connection`.

Buttons on the invoice page use the `form="invoice_form"` attribute: the invoice page's own
action forms are nested inside the change form, and a browser drops nested forms.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from invoices import quickbooks as service
from invoices.admin.invoices import InvoiceAdmin
from invoices.admin.quickbooks_connection import (
    SERVICE_ERRORS,
    error_text,
    reconnect_banner,
    require_post,
)
from invoices.admin.review import quickbooks_send_url
from invoices.models import Invoice, InvoicePush, InvoiceStatus
from invoices.two_factor import TWO_FACTOR_NEEDED, is_verified, two_factor_required


def _check_two_factor(user) -> None:
    """Sending to QuickBooks bills the client like approving does: when the firm requires a
    two-factor login of approvers, a push needs one too (approve and void check the same in
    `invoices.approval`)."""
    if two_factor_required() and not is_verified(user):
        raise service.PushRefused(TWO_FACTOR_NEEDED)


def _latest_push(invoice: Invoice) -> InvoicePush | None:
    pushes = sorted(invoice.pushes.all(), key=lambda p: p.generation)
    return pushes[-1] if pushes else None


def push_summary(push: InvoicePush | None) -> str:
    if push is None:
        return "-"
    if push.status in service.IN_QUICKBOOKS:
        remote = f", {push.qbo_status} there" if push.qbo_status else ""
        return f"{push.get_status_display()}: {push.doc_number} (id {push.qbo_invoice_id}){remote}"
    if push.last_error:
        return f"{push.get_status_display()}: {push.last_error[:120]}"
    return push.get_status_display()


def review_offers_send(invoice: Invoice, user) -> bool:
    """Whether the invoice page's review section already shows "Send to QuickBooks"."""
    return bool(quickbooks_send_url(invoice, user))


def void_requested_message(row: InvoicePush) -> str:
    return (
        f"QuickBooks invoice {row.doc_number} will be voided in QuickBooks; the QuickBooks "
        "section of this page shows when it is done."
    )


def _open_elsewhere_note(earlier) -> str:
    return format_html(
        '<p class="errornote">Not sent to QuickBooks while its hours are still on an open '
        "QuickBooks invoice: {}. Void that one in QuickBooks first (its page: {}), or send "
        "this one anyway with a reason.</p>",
        "; ".join(e.describe() for e in earlier),
        format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:invoices_invoice_change", args=[e.invoice_id]), e.label)
                for e in earlier
            ),
        ),
    )


def _override_form(invoice: Invoice) -> str:
    # Inside the change form (see the module doc), so the reason is posted with the button.
    return format_html(
        '<input type="text" name="override_reason" form="invoice_form" maxlength="500" '
        'size="50" placeholder="why send it anyway (recorded)" aria-label="override reason"> '
        '<button type="submit" form="invoice_form" formmethod="post" formaction="{}" '
        'class="button">Send anyway (override)</button> ',
        reverse("admin:invoices_invoice_qbo_send_override", args=[invoice.pk]),
    )


def _still_open_note(invoice: Invoice, row: InvoicePush) -> str:
    event = service.last_void_event(invoice)
    state = ""
    if event is not None and event.action == "qbo_void_requested":
        state = format_html(
            " Voiding it there was asked for on {}{}; waiting for QuickBooks.",
            event.at.strftime("%Y-%m-%d %H:%M"),
            format_html(" by {}", event.actor) if event.actor else "",
        )
    elif event is not None:
        state = format_html(" Voiding it there failed: {}", event.detail.get("error", ""))
    return format_html(
        '<p class="errornote">Void here, but QuickBooks invoice {} is still open there '
        "({}).{} Void it in QuickBooks with the button below.</p>",
        row.doc_number,
        row.qbo_status or "open",
        state,
    )


class QuickBooksInvoiceAdmin(InvoiceAdmin):
    """The invoice review desk plus QuickBooks: a status column, actions on one or many
    invoices, and a QuickBooks section on the invoice page with push history, errors and the
    buttons that apply (send, approve and send, retry, push again after a void there)."""

    list_display = [*InvoiceAdmin.list_display, "quickbooks_status"]
    actions = [*InvoiceAdmin.actions, "send_to_quickbooks", "approve_and_send_to_quickbooks"]
    fields = None

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("pushes")

    @admin.display(description="QuickBooks")
    def quickbooks_status(self, obj):
        return push_summary(_latest_push(obj))

    # The panel needs the request (for the buttons a user may press), so it is a callable
    # made once per request and listed both as a read-only field and in the fieldsets.
    def _panel(self, request):
        if not hasattr(request, "_quickbooks_panel"):

            def quickbooks(obj):
                return self._panel_html(request, obj)

            quickbooks.short_description = "QuickBooks"
            request._quickbooks_panel = quickbooks
        return request._quickbooks_panel

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), self._panel(request)]

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": list(InvoiceAdmin.fields)}),
            ("QuickBooks", {"fields": [self._panel(request)]}),
        ]

    def _panel_html(self, request, invoice: Invoice):
        pushes = sorted(invoice.pushes.all(), key=lambda p: p.generation)
        user = request.user
        may_push = user.has_perm("invoices.add_invoicepush")
        latest = pushes[-1] if pushes else None
        buttons = []

        def button(label, url_name, css=""):
            buttons.append(
                format_html(
                    '<button type="submit" form="invoice_form" formmethod="post" formaction="{}"'
                    ' class="button{}">{}</button> ',
                    reverse(url_name, args=[invoice.pk]),
                    css,
                    label,
                )
            )

        if (
            may_push
            and invoice.status == InvoiceStatus.DRAFT
            and user.has_perm("invoices.approve_invoice")
        ):
            button(
                "Approve and send to QuickBooks",
                "admin:invoices_invoice_qbo_approve_send",
                " default",
            )
        notes = []
        if (
            may_push
            and invoice.status == InvoiceStatus.APPROVED
            and (latest is None or latest.status == InvoicePush.Status.FAILED)
        ):
            earlier = service.earlier_open_invoices(invoice)
            if earlier:
                notes.append(_open_elsewhere_note(earlier))
                buttons.append(_override_form(invoice))
        if may_push and invoice.status == InvoiceStatus.APPROVED:
            if latest is None:
                # The review section above offers this button when QuickBooks is connected.
                if not review_offers_send(invoice, user):
                    button("Send to QuickBooks", "admin:invoices_invoice_qbo_send", " default")
            elif latest.status == InvoicePush.Status.FAILED:
                button("Retry sending to QuickBooks", "admin:invoices_invoice_qbo_send", " default")
            elif latest.status in service.IN_QUICKBOOKS and (
                latest.qbo_status in service.FINAL_REMOTE_STATUSES
            ):
                button(
                    f"Push again as a new QuickBooks invoice ({latest.qbo_status} there)",
                    "admin:invoices_invoice_qbo_push_again",
                )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    p.generation,
                    p.request_id,
                    p.get_status_display(),
                    f"{p.doc_number} (id {p.qbo_invoice_id})" if p.qbo_invoice_id else "",
                    p.qbo_total if p.qbo_total is not None else "",
                    p.qbo_status or "",
                    p.pushed_at.strftime("%Y-%m-%d %H:%M") if p.pushed_at else "",
                    p.last_error,
                )
                for p in pushes
            ),
        )
        table = (
            format_html(
                "<table><thead><tr><th>#</th><th>Request id</th><th>Status</th><th>QuickBooks "
                "invoice</th><th>QuickBooks total</th><th>There</th><th>Pushed</th><th>Error</th>"
                "</tr></thead><tbody>{}</tbody></table>",
                rows,
            )
            if pushes
            else format_html("<p>{}</p>", "Not sent to QuickBooks.")
        )
        open_push = service.open_push(invoice) if invoice.status == InvoiceStatus.VOID else None
        if open_push is not None:
            notes.append(_still_open_note(invoice, open_push))
            if user.has_perm("invoices.void_invoice"):
                button(
                    f"Void in QuickBooks (invoice {open_push.doc_number})",
                    "admin:invoices_invoice_qbo_void",
                    " default",
                )
        return format_html(
            "<div>{}{}<p>{}</p></div>",
            format_html_join("", "{}", ((n,) for n in notes)),
            table,
            format_html_join("", "{}", ((b,) for b in buttons)),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path(
                "<int:pk>/quickbooks/send/",
                view(self.qbo_send_view),
                name="invoices_invoice_qbo_send",
            ),
            path(
                "<int:pk>/quickbooks/approve-and-send/",
                view(self.qbo_approve_send_view),
                name="invoices_invoice_qbo_approve_send",
            ),
            path(
                "<int:pk>/quickbooks/push-again/",
                view(self.qbo_push_again_view),
                name="invoices_invoice_qbo_push_again",
            ),
            path(
                "<int:pk>/quickbooks/send-override/",
                view(self.qbo_send_override_view),
                name="invoices_invoice_qbo_send_override",
            ),
            path(
                "<int:pk>/quickbooks/void/",
                view(self.qbo_void_view),
                name="invoices_invoice_qbo_void",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        reconnect_banner(request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            reconnect_banner(request)
            invoice = self.get_object(request, object_id)
            if invoice is not None and invoice.status == InvoiceStatus.APPROVED:
                # The Void form offers "Also void it in QuickBooks" for this QuickBooks invoice.
                extra_context = {
                    **(extra_context or {}),
                    "qbo_open_push": service.open_push(invoice),
                }
        return super().change_view(request, object_id, form_url, extra_context)

    def _qbo_action(self, request, pk, call, done):
        require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        try:
            _check_two_factor(request.user)
            push = call(invoice=invoice, user=request.user)
        except SERVICE_ERRORS as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
        else:
            self.message_user(
                request, f"{invoice.label}: {done} (request {push.request_id}).", messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def qbo_send_view(self, request, pk):
        return self._qbo_action(request, pk, service.request_push, "queued for QuickBooks")

    def qbo_approve_send_view(self, request, pk):
        return self._qbo_action(
            request, pk, service.approve_and_push, "approved and queued for QuickBooks"
        )

    def qbo_push_again_view(self, request, pk):
        return self._qbo_action(
            request, pk, service.push_again, "queued as a new QuickBooks invoice"
        )

    def qbo_send_override_view(self, request, pk):
        reason = request.POST.get("override_reason", "")
        if not reason.strip():
            self.message_user(
                request,
                "Sending anyway needs a reason: say why a second open QuickBooks invoice for "
                "these hours is right. Nothing was sent.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        return self._qbo_action(
            request,
            pk,
            lambda *, invoice, user: service.request_push(
                invoice=invoice, user=user, override_reason=reason
            ),
            "queued for QuickBooks, overriding the earlier open QuickBooks invoice",
        )

    def qbo_void_view(self, request, pk):
        require_post(request)
        invoice = get_object_or_404(Invoice, pk=pk)
        try:
            row = service.void_in_quickbooks(invoice=invoice, user=request.user)
        except SERVICE_ERRORS as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
        else:
            self.message_user(request, void_requested_message(row), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))

    def _bulk(self, request, queryset, call, verb):
        try:
            _check_two_factor(request.user)
        except service.PushRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        queued, refused = 0, []
        for invoice in queryset.order_by("id"):
            try:
                call(invoice=invoice, user=request.user)
                queued += 1
            except SERVICE_ERRORS as exc:
                refused.append(error_text(exc))
        if queued:
            self.message_user(
                request,
                f"{queued} invoice(s) {verb}; they are sent one at a "
                "time, within QuickBooks' limits.",
                messages.SUCCESS,
            )
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)

    @admin.action(description="Send to QuickBooks (or retry a failed send)")
    def send_to_quickbooks(self, request, queryset):
        self._bulk(request, queryset, service.request_push, "queued for QuickBooks")

    @admin.action(description="Approve and send to QuickBooks")
    def approve_and_send_to_quickbooks(self, request, queryset):
        self._bulk(
            request, queryset, service.approve_and_push, "approved and queued for QuickBooks"
        )


admin.site.unregister(Invoice)
admin.site.register(Invoice, QuickBooksInvoiceAdmin)
