"""The review queue in the admin (billing semantics 2.3; issue 16): a month's pending entries
grouped by client and normalized note, largest standard value first, each group decided with
one form (`invoices.review.decide_note`), or turned into a classification rule after a preview
of what it would catch (`invoices.rule_preview`). Decisions leave the drafts they touch stale
(the database marks them in the decision's transaction); "Rebuild all stale drafts" rebuilds
them once per batch of decisions.

`ReviewQueueViews` is mixed into `invoices.admin.classification.ClassificationAdmin`, which
serves its URLs under /admin/invoices/classification/queue/.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from invoices.classification import classify_entries, entries_to_classify
from invoices.configuration import load_configuration
from invoices.core.classify import NotesPatternRefused, compile_notes_pattern
from invoices.core.rounding import currency_places, fraction_to_decimal
from invoices.drafting import DraftingError, Period
from invoices.models import BillingCode, Category, Classification, ClassificationRule, ClientPolicy
from invoices.overview import default_period
from invoices.review import (
    CorrectionRefused,
    decide_note,
    pending_entries,
    rebuild_stale_drafts,
    stale_drafts,
)
from invoices.rule_preview import preview_rule
from timesheets.models import Client

HOURS_PLACES = 2
ALL_PERIODS = "all"  # "Rebuild all stale drafts" of every period


def stale_drafts_notice(count: int) -> str:
    """The end of a message after a change that made drafts stale (a decision, a rule, a
    client's policy, a rules file): how many, and a link to the month overview's list of
    stale drafts, whose button rebuilds them all. Safe HTML."""
    if not count:
        return "."
    return format_html(
        '; {} draft{} stale: rebuild before approving (<a href="{}#stale-drafts">rebuild all</a>).',
        count,
        "" if count == 1 else "s",
        reverse("admin:invoices_invoice_month"),
    )


@dataclass
class QueueGroup:
    """One (client, normalized note) group of pending entries."""

    client: Client
    normalized_notes: str
    notes: str  # the most frequent wording as written
    currency: str
    entries: list = field(default_factory=list)
    seconds: int = 0
    value: Fraction = Fraction(0)
    unpriced: int = 0  # entries no rate row prices
    reasons: Counter = field(default_factory=Counter)
    written: Counter = field(default_factory=Counter)
    # The client bills with a code on every line: the categories that have none for it yet
    # (a decision for one of them takes the code typed beside it).
    uncoded: dict[int, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def hours(self) -> Decimal:
        return fraction_to_decimal(Fraction(self.seconds, 3600), HOURS_PLACES)

    @property
    def standard_value(self) -> Decimal:
        return fraction_to_decimal(self.value, currency_places(self.currency))

    @property
    def people(self) -> list[str]:
        return sorted({e.person.name for e in self.entries})

    @property
    def first_date(self):
        return min(e.date for e in self.entries)

    @property
    def last_date(self):
        return max(e.date for e in self.entries)

    @property
    def days(self) -> int:
        return len({e.date for e in self.entries})

    @property
    def reason(self) -> str:
        """The long reason once per group: the most frequent of its entries' reasons."""
        return self.reasons.most_common(1)[0][0] if self.reasons else ""

    @property
    def tasks(self) -> set[str]:
        return {e.task for e in self.entries}

    @property
    def key(self) -> str:
        return f"{self.client.name}|{self.normalized_notes}"


def queue_groups(*, period: Period) -> list[QueueGroup]:
    """The period's pending entries grouped by (client, normalized note), largest standard
    value (hours x the rate each entry would get, section 5) first. Two queries plus the
    configuration's, whatever the number of entries."""
    entries = list(
        pending_entries(period=period)
        .select_related("person", "project", "client", "classification")
        .distinct()
        .order_by("client_id", "date", "id")
    )
    if not entries:
        return []
    config = load_configuration({e.client_id for e in entries})
    groups: dict[tuple[int, str], QueueGroup] = {}
    for entry in entries:
        policy = config.policy(entry.client_id)
        group = groups.get((entry.client_id, entry.normalized_notes))
        if group is None:
            group = groups[(entry.client_id, entry.normalized_notes)] = QueueGroup(
                client=entry.client,
                normalized_notes=entry.normalized_notes,
                notes="",
                currency=policy.currency,
            )
        group.entries.append(entry)
        group.seconds += entry.duration_seconds
        group.written[entry.notes.strip()] += 1
        classification = getattr(entry, "classification", None)
        group.reasons[
            (classification.review_reason if classification else "") or "not classified yet"
        ] += 1
        match = config.rates.resolve(
            day=entry.date,
            client=entry.client_id,
            project=entry.project_id,
            person=entry.person_id,
            role=entry.person.role,
        )
        if match is None:
            group.unpriced += 1
        else:
            group.value += Fraction(entry.duration_seconds, 3600) * Fraction(match.row.rate)
    uncoded = _uncoded_categories(config, {client_id for client_id, _ in groups})
    for (client_id, _), group in groups.items():
        group.notes = group.written.most_common(1)[0][0]
        group.uncoded = uncoded.get(client_id, {})
    return sorted(
        groups.values(),
        key=lambda g: (-g.value, -g.count, g.client.name.casefold(), g.normalized_notes),
    )


def _uncoded_categories(config, client_ids) -> dict[int, dict[int, str]]:
    """Per client that requires a billing code on every line (section 4): the billable
    categories, id -> name, with neither a client code nor a default code, which would leave
    an entry decided with them pending. (A category that bills nothing for the client needs
    no code; marking its entries billable anyway is refused, as any uncoded decision is.)"""
    out = {}
    for client_id in client_ids:
        policy = config.policy(client_id)
        if not policy.require_billing_codes:
            continue
        out[client_id] = {
            config.category_ids[key]: info.name
            for key, info in sorted(config.categories.items(), key=lambda item: item[1].name)
            if info.billable
            and key not in policy.non_billable_categories
            and not (policy.billing_codes.get(key) or info.billing_code)
        }
    return out


def _billing_code_for_decision(
    *, user, client: Client, category: Category | None, billable: bool | None, code: str
) -> str:
    """Where the client requires a billing code on every line and has none for the decided
    category, the code typed beside the category becomes the client's code for it (as if
    added on the client's policy), and the client's entries are re-checked with it; without
    one the decision is refused, since it would leave the entries pending. Returns the code
    added, or "". Runs in the decision's transaction."""
    code = code.strip()
    if category is None or billable is False:
        return ""  # a decision that bills nothing needs no code
    existing = BillingCode.objects.filter(client=client, category=category).first()
    if code:
        if existing is not None:
            if existing.code != code:
                raise CorrectionRefused(
                    f"{client.name} already bills {category.name} as {existing.code}; change "
                    "it on the client's policy, or leave the billing code empty"
                )
            return ""
        if not user.has_perm("invoices.add_billingcode"):
            raise CorrectionRefused("you may not add billing codes; leave the billing code empty")
        BillingCode.objects.create(client=client, category=category, code=code)
        classify_entries(entries_to_classify(client_ids=[client.pk]))
        return code
    policy = ClientPolicy.objects.filter(client=client).first()
    if policy is None or not policy.require_billing_codes or existing or category.billing_code:
        return ""
    bills = billable or (
        category.billable and not policy.non_billable_categories.filter(pk=category.pk).exists()
    )
    if bills:
        raise CorrectionRefused(
            f"{client.name} requires a billing code on every line and has none for "
            f"{category.name}: type the code beside the category (it is kept for "
            f"{client.name}), or choose another category"
        )
    return ""


def notes_pattern_for(normalized_notes: str) -> str:
    """A rule's notes pattern for a note, built by escaping its words: any case, any
    punctuation or spacing between and around them ("sync w client" also matches
    "Sync w/ client!"), nothing else. Never a pattern the reviewer has to write."""
    words = normalized_notes.split()
    if not words:
        raise ValidationError("an entry without a note cannot make a notes rule")
    return r"(?i)^\W*" + r"\W+".join(re.escape(word) for word in words) + r"\W*$"


class GroupForm(forms.Form):
    """Identifies a group and carries the decision for it."""

    month = forms.CharField()
    client = forms.ModelChoiceField(Client.objects.all())
    note = forms.CharField(required=False, strip=False)
    category = forms.ModelChoiceField(Category.objects.all(), required=False)
    billable = forms.NullBooleanField(required=False)
    description = forms.CharField(required=False, max_length=2000)
    # The client's code for the chosen category, where the client requires one and has none.
    billing_code = forms.CharField(required=False, max_length=20)
    position = forms.IntegerField(required=False, min_value=0)

    def clean_month(self):
        try:
            return Period.month(self.cleaned_data["month"])
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


def _problems(form: forms.Form) -> str:
    return "; ".join(e for errors in form.errors.values() for e in errors)


def _require_post(request) -> None:
    if request.method != "POST":
        raise PermissionDenied("use the buttons on the review queue")


class ReviewQueueViews:
    """The queue (`queue_view`), one decision per group (`queue_decide_view`), "Rebuild all
    stale drafts" (`queue_rebuild_view`) and "Make this a rule" (`queue_rule_view`); a mixin
    of `ClassificationAdmin`."""

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("queue/", wrap(self.queue_view), name="invoices_classification_queue"),
            path(
                "queue/decide/",
                wrap(self.queue_decide_view),
                name="invoices_classification_queue_decide",
            ),
            path(
                "queue/rebuild/",
                wrap(self.queue_rebuild_view),
                name="invoices_classification_queue_rebuild",
            ),
            path(
                "queue/rule/", wrap(self.queue_rule_view), name="invoices_classification_queue_rule"
            ),
            *super().get_urls(),
        ]

    def _queue_url(self, period: Period, position: int | None = None) -> str:
        url = reverse("admin:invoices_classification_queue") + f"?month={period.start:%Y-%m}"
        # Back to where the reviewer was: the group now at that place is the next one.
        return url + (f"#group-{position}" if position is not None else "")

    def queue_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        month = request.GET.get("month", "").strip()
        try:
            period = Period.month(month) if month else default_period()
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            period = default_period()
        groups = queue_groups(period=period)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Review queue {period.start:%B %Y}",
            "opts": self.model._meta,
            "period": period,
            "month": f"{period.start:%Y-%m}",
            "groups": groups,
            # Said once above the table when every group waits for the same reason.
            "common_reason": groups[0].reason
            if groups and len({g.reason for g in groups}) == 1
            else "",
            "pending_entries": sum(g.count for g in groups),
            "stale": list(stale_drafts(period=period).select_related("client", "project")),
            "categories": list(Category.objects.order_by("name").values_list("id", "name")),
            "can_decide": request.user.has_perm("invoices.change_classification"),
            "can_rebuild": request.user.has_perm("invoices.change_invoice"),
            "can_add_rule": request.user.has_perm("invoices.add_classificationrule"),
        }
        return TemplateResponse(request, "admin/invoices/classification/review_queue.html", context)

    def queue_decide_view(self, request):
        """One decision for a whole group, in one transaction; the drafts stay stale until
        "Rebuild all stale drafts" (a rebuild per decision would make each take seconds)."""
        _require_post(request)
        if not request.user.has_perm("invoices.change_classification"):
            raise PermissionDenied
        form = GroupForm(request.POST)
        if not form.is_valid():
            self.message_user(request, f"Not decided: {_problems(form)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:invoices_classification_queue"))
        data = form.cleaned_data
        period, client = data["month"], data["client"]
        back = HttpResponseRedirect(self._queue_url(period, data["position"]))
        if data["category"] is None and data["billable"] is None:
            self.message_user(
                request,
                "Not decided: choose a category, or mark the entries not billable.",
                messages.ERROR,
            )
            return back
        try:
            with transaction.atomic():
                added = _billing_code_for_decision(
                    user=request.user,
                    client=client,
                    category=data["category"],
                    billable=data["billable"],
                    code=data["billing_code"],
                )
                decision = decide_note(
                    client=client,
                    normalized_notes=[data["note"]],
                    period=period,
                    user=request.user,
                    category=data["category"],
                    billable=data["billable"],
                    description=data["description"],
                )
        except CorrectionRefused as exc:
            self.message_user(request, f"Not decided: {exc}", messages.ERROR)
            return back
        self._say_decided(request, decision, added)
        return back

    def _say_decided(self, request, decision, added_code: str) -> None:
        """What one decision did; a warning when some of its entries still wait (and why)."""
        n = len(decision.entry_ids)
        client = decision.client
        followed = max(0, decision.reclassified - n)
        stale = len(decision.stale_drafts)
        waiting = Counter(
            Classification.objects.filter(
                entry_id__in=decision.entry_ids, needs_review=True
            ).values_list("review_reason", flat=True)
        )
        self.message_user(
            request,
            f"{n} entr{'y' if n == 1 else 'ies'} of {client.name} decided"
            + (f" (billing code {added_code} kept for {client.name})" if added_code else "")
            + (f"; {followed} other entries of the client re-checked by memory" if followed else "")
            + (
                f"; {sum(waiting.values())} still wait: {waiting.most_common(1)[0][0]}"
                if waiting
                else ""
            )
            + (
                f"; {stale} draft{'' if stale == 1 else 's'} stale: rebuild before approving."
                if stale
                else "."
            ),
            messages.WARNING if waiting else messages.SUCCESS,
        )

    def queue_rebuild_view(self, request):
        """The "Rebuild all stale drafts" button: of the month posted, or of every period with
        `month=all` (the month overview's button, offered after a rule or policy is saved);
        back to `next` when it is a page of this site, else to the queue."""
        _require_post(request)
        if not request.user.has_perm("invoices.change_invoice"):
            raise PermissionDenied
        month = request.POST.get("month", "").strip()
        period: Period | None = None
        try:
            if month != ALL_PERIODS:
                period = Period.month(month)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:invoices_classification_queue"))
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = self._queue_url(period) if period else self._queue_url(default_period())
        stale = stale_drafts(period=period).count()
        try:
            rebuild_stale_drafts(period=period, user=request.user)
        except DraftingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(back)
        left = stale_drafts(period=period).count()
        self.message_user(
            request,
            f"{stale} stale draft{'' if stale == 1 else 's'} rebuilt"
            + (f"; {left} still stale (changed meanwhile)." if left else "."),
            messages.SUCCESS if not left else messages.WARNING,
        )
        return HttpResponseRedirect(back)

    def queue_rule_view(self, request):
        """ "Make this a rule" from a group: propose a rule (the group's task when all its
        entries share one, else a notes pattern escaped from the note), preview what it would
        catch in the month and how each invoice total moves, and save it on confirm."""
        _require_post(request)
        if not request.user.has_perm("invoices.add_classificationrule"):
            raise PermissionDenied
        form = GroupForm(request.POST)
        if not form.is_valid():
            self.message_user(request, f"No rule: {_problems(form)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:invoices_classification_queue"))
        data = form.cleaned_data
        period, client, category = data["month"], data["client"], data["category"]
        back = HttpResponseRedirect(self._queue_url(period, data["position"]))
        if category is None:
            self.message_user(request, "No rule: choose the rule's category.", messages.ERROR)
            return back
        group = next(
            (
                g
                for g in queue_groups(period=period)
                if g.client.pk == client.pk and g.normalized_notes == data["note"]
            ),
            None,
        )
        tasks = group.tasks if group else set()
        shared_task = next(iter(tasks)) if len(tasks) == 1 and "" not in tasks else ""
        kind = request.POST.get("kind") or ("task" if shared_task else "notes")
        try:
            if kind == "task":
                if not shared_task:
                    raise ValidationError("the group's entries do not share one task")
                matcher = {"task": shared_task}
            else:
                kind, matcher = "notes", {"notes_regex": notes_pattern_for(data["note"])}
                compile_notes_pattern(matcher["notes_regex"])
        except (ValidationError, NotesPatternRefused) as exc:
            message = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
            self.message_user(request, f"No rule: {message}", messages.ERROR)
            return back
        rule = ClassificationRule(client=client, category=category, **matcher)
        if request.POST.get("confirm"):
            with transaction.atomic():
                rule.save()
                # The month's entries follow at once; their drafts are marked stale here.
                summary = classify_entries(
                    entries_to_classify(client_ids=[client.pk], start=period.start, end=period.end)
                )
            stale = stale_drafts(period=period).filter(client=client).count()
            self.message_user(
                request,
                format_html(
                    "Classification rule #{} saved ({}); {} entries of {} re-checked{}",
                    rule.pk,
                    rule,
                    summary.entries,
                    client.name,
                    stale_drafts_notice(stale),
                ),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(self._queue_url(period))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Make a rule from '{group.notes if group else data['note']}'",
            "opts": self.model._meta,
            "period": period,
            "month": f"{period.start:%Y-%m}",
            "group": group,
            "client": client,
            "category": category,
            "note": data["note"],
            "position": data["position"],
            "kind": kind,
            "shared_task": shared_task,
            "rule": rule,
            "pattern": matcher.get("notes_regex", ""),
            "rule_preview": preview_rule(rule=rule, period=period),
        }
        return TemplateResponse(
            request, "admin/invoices/classification/review_queue_rule.html", context
        )
