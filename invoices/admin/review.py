"""The invoice review page in the admin: lines with their entries and derivation, pending
entries resolved in place, held entries (billing semantics 10.2) released in place, late time
(10.1) marked with its period, flags, the buttons that apply (rebuild, approve, void, send to
QuickBooks), and the printable client-facing invoice.

`InvoiceReviewViews` is mixed into `invoices.admin.invoices.InvoiceAdmin`, which lists the URLs
(the release URL is added here, in `get_urls`).
"""

from __future__ import annotations

import json
from collections import defaultdict

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

from invoices import printing
from invoices.admin.adjustments import InvoiceAdjustmentViews
from invoices.classification import confidence_threshold
from invoices.errors import BillingError
from invoices.models import (
    Category,
    Classification,
    Flag,
    Invoice,
    InvoiceEntry,
    InvoiceStatus,
    QuickBooksConnection,
)
from invoices.month_end_figures import void_chain
from invoices.review import correct_entry, release_hold


def _hours(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}"


def _late_label(periods) -> str:
    """Section 10.1's mark: "late time from 2026-10" (or "from 2026-09, 2026-10")."""
    return f"late time from {', '.join(periods)}" if periods else ""


def require_post(request) -> None:
    """The invoice page's actions are buttons that post; a plain GET is refused."""
    if request.method != "POST":
        raise PermissionDenied("use the buttons on the invoice page")


class ResolveForm(forms.Form):
    """Resolving one entry from the invoice page: a reviewer's decision (tier 1)."""

    category = forms.ModelChoiceField(Category.objects.all(), required=False)
    billable = forms.NullBooleanField(required=False)
    description = forms.CharField(required=False, max_length=2000)
    # The wording shown when the page was rendered: an unchanged description is not a decision.
    description_shown = forms.CharField(required=False, max_length=2000)

    def clean(self):
        data = super().clean()
        if data.get("category") is None and data.get("billable") is None:
            raise ValidationError("choose a category, or mark the entry not billable")
        return data


class InvoiceReviewViews(InvoiceAdjustmentViews):
    """The review page (`change_view`), resolving one entry (`resolve_view`), releasing a held
    one (`release_view`) and the printable invoice (`print_view`); a mixin of `InvoiceAdmin`."""

    def get_urls(self):
        release = path(
            "<int:pk>/release/<int:entry_id>/",
            self.admin_site.admin_view(self.release_view),
            name="invoices_invoice_release",
        )
        return [release, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, unquote(object_id))
        extra = {}
        if invoice is not None:
            extra = self._review_context(request, invoice)
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def _review_context(self, request, invoice: Invoice) -> dict:
        """Everything the review page shows, in a fixed number of queries (no per-line or
        per-entry query): a 500-line invoice renders in well under a second (benchmark)."""
        links = (
            InvoiceEntry.objects.filter(invoice=invoice)
            .select_related(
                "entry", "entry__person", "entry__classification", "entry__classification__category"
            )
            .order_by("entry__date", "entry__person__name", "entry__id")
        )
        threshold = confidence_threshold()
        by_line, pending, held, low_confidence = defaultdict(list), [], [], 0
        late_periods: set[str] = set()
        for link in links:
            classification = getattr(link.entry, "classification", None)
            low = classification is not None and (
                classification.tier == Classification.Tier.LLM
                or (classification.confidence is not None and classification.confidence < threshold)
            )
            low_confidence += low
            row = {
                "link": link,
                "entry": link.entry,
                "classification": classification,
                "low_confidence": low,
                "source_change": json.dumps(link.entry.pending_source_change, sort_keys=True)
                if link.entry.pending_source_change
                else "",
                "raw": _hours(link.raw_seconds),
                "billed": _hours(link.billed_seconds)
                if link.state == InvoiceEntry.State.BILLED
                else "",
                "late": _late_label([f"{link.late_from:%Y-%m}"] if link.late_from else []),
            }
            if link.late_from:
                late_periods.add(f"{link.late_from:%Y-%m}")
            if link.state == InvoiceEntry.State.HELD:
                held.append(row)  # never blocks approval (section 10.2)
            elif link.line_id is None:
                pending.append(row)
            else:
                by_line[link.line_id].append(row)
        lines = [
            {
                "line": line,
                "entries": by_line.get(line.id, []),
                "late": _late_label(line.derivation.get("late_time_from", [])),
            }
            for line in invoice.lines.all()
        ]
        flags = [(flag, Flag(flag).label) for flag in invoice.flags]
        if late_periods:
            flags = [
                (code, f"{label} ({', '.join(sorted(late_periods))})")
                if code == Flag.LATE_TIME
                else (code, label)
                for code, label in flags
            ]
        if low_confidence:
            flags.append(
                (
                    "low_confidence",
                    f"{low_confidence} low-confidence entr{'y' if low_confidence == 1 else 'ies'} "
                    f"(model tier or confidence below {threshold})",
                )
            )
        user = request.user
        is_draft = invoice.status == InvoiceStatus.DRAFT
        replaced, successor = void_chain(invoice)
        return {
            "review_replaces": replaced,
            "review_successor": successor,
            "review_lines": lines,
            "review_pending": pending,
            "review_pending_groups": pending_by_reason(pending),
            "review_stale": Flag.STALE in invoice.flags,
            "review_held": held,
            "review_flags": flags,
            "review_events": invoice.events.select_related("actor")[:50],
            "categories": list(Category.objects.order_by("name").values_list("id", "name")),
            "can_resolve": is_draft and user.has_perm("invoices.change_classification"),
            # Releasing is a reviewer's decision about an entry, as resolving one is.
            "can_release": is_draft and user.has_perm("invoices.change_classification"),
            "can_approve": is_draft and user.has_perm("invoices.approve_invoice"),
            "can_void": invoice.status != InvoiceStatus.VOID
            and user.has_perm("invoices.void_invoice"),
            "can_rebuild": is_draft and user.has_perm("invoices.change_invoice"),
            "send_url": quickbooks_send_url(invoice, user),
            "review_version": invoice.drafted_at.isoformat(),
            "invoice": invoice,
            "review_month": f"{invoice.period_start:%Y-%m}",
            "next_draft": next_draft_of_period(invoice),
        }

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["show_save"] = context["show_save_and_continue"] = False
        context["show_save_and_add_another"] = context["show_delete"] = False
        return super().render_change_form(request, context, add, change, form_url, obj)

    def resolve_view(self, request, pk, entry_id):
        """Resolve (or correct) one entry of a draft in place: the decision is stored as the
        reviewer's (tier 1, it becomes memory for identical notes of the client once the
        invoice is approved) and the draft rebuilds at once."""
        require_post(request)
        if not request.user.has_perm("invoices.change_classification"):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice, pk=pk)
        back = HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        if invoice.is_frozen:
            self.message_user(
                request,
                f"{invoice.label} is {invoice.get_status_display().lower()}; its entries "
                "cannot be changed (void it first)",
                messages.ERROR,
            )
            return back
        link = (
            InvoiceEntry.objects.filter(invoice=invoice, entry_id=entry_id)
            .select_related("entry")
            .first()
        )
        if link is None:
            raise Http404("that entry is not on this invoice")
        form = ResolveForm(request.POST)
        if not form.is_valid():
            problems = "; ".join(e for errors in form.errors.values() for e in errors)
            self.message_user(request, f"Not resolved: {problems}", messages.ERROR)
            return back
        data = form.cleaned_data
        changes = {"category": data["category"], "billable": data["billable"]}
        if data["description"].strip() != data["description_shown"].strip():
            changes["description"] = data["description"]
        before = invoice.total
        try:
            rebuilt = correct_entry(entry=link.entry, user=request.user, **changes)
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return back
        if rebuilt is None:
            self.message_user(
                request,
                "Resolved; nothing is left to bill, so the draft was removed.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:invoices_invoice_changelist"))
        self.message_user(
            request,
            f"Entry of {link.entry.date:%Y-%m-%d} resolved; {rebuilt.label} rebuilt: total "
            f"{before} -> {rebuilt.total} {rebuilt.currency}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:invoices_invoice_change", args=[rebuilt.pk])
            + _place_after_resolving(rebuilt, request.POST.get("position"))
        )

    def release_view(self, request, pk, entry_id):
        """Release one held entry of a draft (section 10.2: the tracker calls it invoiced or
        not approved): it bills on this draft, rebuilt at once, or as late time on the next."""
        require_post(request)
        if not request.user.has_perm("invoices.change_classification"):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice, pk=pk)
        back = HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[pk]))
        if invoice.is_frozen:
            self.message_user(
                request,
                f"{invoice.label} is {invoice.get_status_display().lower()}; its entries "
                "cannot be changed (void it first)",
                messages.ERROR,
            )
            return back
        link = (
            InvoiceEntry.objects.filter(invoice=invoice, entry_id=entry_id)
            .select_related("entry")
            .first()
        )
        if link is None:
            raise Http404("that entry is not on this invoice")
        if link.state != InvoiceEntry.State.HELD:
            self.message_user(
                request,
                f"The entry of {link.entry.date:%Y-%m-%d} is not held "
                f"({link.get_state_display().lower()}); nothing was released.",
                messages.ERROR,
            )
            return back
        before = invoice.total
        try:
            rebuilt = release_hold(entry=link.entry, user=request.user)
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return back
        released = (
            f"Hold on the entry of {link.entry.date:%Y-%m-%d} released ({link.pending_reason})"
        )
        if rebuilt is None:
            self.message_user(
                request,
                f"{released}; nothing is left to bill on this draft, so it was removed.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:invoices_invoice_changelist"))
        self.message_user(
            request,
            f"{released}; {rebuilt.label} rebuilt: total {before} -> {rebuilt.total} "
            f"{rebuilt.currency}.",
            messages.SUCCESS,
        )
        held_left = InvoiceEntry.objects.filter(
            invoice=rebuilt, state=InvoiceEntry.State.HELD
        ).exists()
        return HttpResponseRedirect(
            reverse("admin:invoices_invoice_change", args=[rebuilt.pk])
            + ("#held" if held_left else "#lines")
        )

    def print_view(self, request, pk):
        """The client-facing invoice, printable (drafts are marked as such)."""
        invoice = self._printable(request, pk)
        context = {"doc": printing.invoice_document(invoice=invoice)}
        return TemplateResponse(request, "invoices/invoice_print.html", context)

    def pdf_view(self, request, pk):
        """The same invoice as a PDF file, for download (a draft's says DRAFT on every page)."""
        invoice = self._printable(request, pk)
        response = HttpResponse(
            printing.invoice_pdf(invoice=invoice), content_type="application/pdf"
        )
        response["Content-Disposition"] = f'attachment; filename="{printing.pdf_filename(invoice)}"'
        return response

    def _printable(self, request, pk) -> Invoice:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Invoice.objects.select_related("client", "project"), pk=pk)


def pending_by_reason(rows: list[dict]) -> list[dict]:
    """The pending rows grouped by why they wait, so the page says a long reason once per
    group instead of on every row: the largest group first, rows in date order within."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["link"].pending_reason or "pending review"].append(row)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    out, position = [], 0
    for reason, members in ordered:
        for row in members:
            row["position"] = position
            position += 1
        out.append({"reason": reason, "rows": members})
    return out


def _place_after_resolving(invoice: Invoice, position: str | None) -> str:
    """Where the page opens after a resolution: the pending row now at the resolved one's
    place (the next to decide; its twins left with it), else the lines. One query."""
    left = InvoiceEntry.objects.filter(invoice=invoice, state=InvoiceEntry.State.PENDING).count()
    if not left:
        return "#lines"
    try:
        index = min(max(int(position or 0), 0), left - 1)
    except ValueError:
        index = 0
    return f"#pending-{index}"


def next_draft_of_period(invoice: Invoice) -> Invoice | None:
    """The draft to review after this one: the next of the same period by client name (then
    the first, from the top), so that a month is reviewed and approved draft after draft
    without going back to the overview. One query."""
    drafts = list(
        Invoice.objects.filter(
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            status=InvoiceStatus.DRAFT,
        )
        .exclude(pk=invoice.pk)
        .select_related("client", "project")
    )
    if not drafts:
        return None

    def order(draft: Invoice) -> tuple:
        return (draft.client.name.casefold(), draft.project.name if draft.project else "", draft.pk)

    here = order(invoice)
    drafts.sort(key=order)
    return next((d for d in drafts if order(d) > here), drafts[0])


def quickbooks_send_url(invoice: Invoice, user) -> str:
    """The "Send to QuickBooks" action, where QuickBooks is set up: the push views come from
    `invoices.admin.quickbooks`; without them, or without a connection, there is no button."""
    if invoice.status != InvoiceStatus.APPROVED or not user.has_perm("invoices.add_invoicepush"):
        return ""
    try:
        url = reverse("admin:invoices_invoice_qbo_send", args=[invoice.pk])
    except NoReverseMatch:
        return ""
    connected = QuickBooksConnection.objects.filter(
        pk=1, status=QuickBooksConnection.Status.CONNECTED
    ).exists()
    if not connected or invoice.pushes.exists():
        return ""  # not configured, or already sent: the QuickBooks panel shows what to do
    return url
