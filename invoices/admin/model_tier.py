"""Admin for the language-model tier: what each run and request cost, and who decided what.

Read-only lists of `ModelRun` and `ModelRequest` (tokens, cost, latency, cache-hit share), and a
page with, per client, how many entries each tier decided
(`templates/admin/invoices/modelrun/tiers.html`).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.contrib import admin, messages
from django.db.models import Count, Q, Sum
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from invoices.drafting import Period
from invoices.models import Classification, ModelRequest, ModelRun

TIER_COLUMNS = [
    (Classification.Tier.MANUAL, "manual"),
    (Classification.Tier.RULE, "rule"),
    (Classification.Tier.MEMORY, "memory"),
    (Classification.Tier.LLM, "language model"),
]


def cache_hit_share(obj) -> str:
    """Cached prompt tokens read / all prompt tokens (input excludes cached tokens)."""
    prompt = obj.input_tokens + obj.cache_read_tokens + obj.cache_write_tokens
    if not prompt:
        return "-"
    return f"{Decimal(obj.cache_read_tokens * 100) / prompt:.0f}%"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ModelRequestInline(admin.TabularInline):
    model = ModelRequest
    extra = 0
    can_delete = False
    fields = [
        "client",
        "status",
        "entries",
        "distinct_notes",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "attempts",
        "error",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelRun)
class ModelRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "trigger",
        "model",
        "status",
        "entries",
        "decided",
        "abstained",
        "requests",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cache_share",
        "cost_usd",
        "duration",
        "batch_id",
    ]
    list_filter = ["status", "trigger", "model"]
    date_hierarchy = "started_at"
    inlines = [ModelRequestInline]

    @admin.display(description="cache hits")
    def cache_share(self, obj):
        return cache_hit_share(obj)

    @admin.display(description="duration")
    def duration(self, obj):
        if obj.finished_at is None:
            return "-"
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"

    def get_urls(self):
        return [
            path(
                "tiers/",
                self.admin_site.admin_view(self.tiers_view),
                name="invoices_modelrun_tiers",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        messages.info(
            request,
            format_html(
                'Per client, how many entries each tier decided: <a href="{}">tier counts</a>.',
                reverse("admin:invoices_modelrun_tiers"),
            ),
        )
        return super().changelist_view(request, extra_context)

    def tiers_view(self, request):
        """Per client: entries decided by each tier, still needing review, and model cost."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        rows = Classification.objects.all()
        month = request.GET.get("period", "")
        period = None
        if month:
            try:
                period = Period.month(month)
            except ValueError:
                messages.error(request, f"not a month (YYYY-MM): {month}")
        if period is not None:
            rows = rows.filter(entry__date__gte=period.start, entry__date__lte=period.end)
        counts: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        grouped = (
            rows.values("entry__client_id", "entry__client__name", "tier")
            .annotate(n=Count("entry_id"), pending=Count("entry_id", filter=Q(needs_review=True)))
            .order_by()
        )
        for row in grouped:
            key = (row["entry__client_id"], row["entry__client__name"])
            counts[key]["pending"] += row["pending"]
            counts[key]["total"] += row["n"]
            counts[key][row["tier"]] += row["n"] - row["pending"]
        cost = dict(
            ModelRequest.objects.values_list("client_id").annotate(c=Sum("cost_usd")).order_by()
        )
        table = [
            {
                "client": key[1],
                "tiers": [counts[key].get(tier, 0) for tier, _ in TIER_COLUMNS],
                "pending": counts[key]["pending"],
                "total": counts[key]["total"],
                "cost": cost.get(key[0], Decimal(0)),
            }
            for key in sorted(counts, key=lambda key: key[1].lower())
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Entries decided per tier, per client",
            "columns": [label for _, label in TIER_COLUMNS],
            "table": table,
            "period": month,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/invoices/modelrun/tiers.html", context)


@admin.register(ModelRequest)
class ModelRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "run",
        "client",
        "status",
        "entries",
        "distinct_notes",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cache_share",
        "cost_usd",
        "latency_ms",
        "attempts",
    ]
    list_filter = ["status", "client"]
    list_select_related = ["run", "client"]
    date_hierarchy = "created_at"

    @admin.display(description="cache hits")
    def cache_share(self, obj):
        return cache_hit_share(obj)
