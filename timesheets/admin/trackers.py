"""Tracker connections and their sync runs."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django_q.tasks import async_task

from timesheets import sync
from timesheets.admin.common import _ReadOnlyAdmin
from timesheets.models import (
    SyncRun,
    TrackerConnection,
)


def _enqueue_sync(connection_id: int, trigger: str) -> None:
    transaction.on_commit(
        lambda: async_task(
            "timesheets.tasks.sync_connection_task",
            connection_id,
            trigger,
            q_options={"group": f"sync-{connection_id}"},
        )
    )


class TrackerConnectionForm(forms.ModelForm):
    # Write-only: the field is never filled in, so the saved token never reaches a page.
    token = forms.CharField(
        label="API token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave blank to keep the saved token.",
    )
    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Blank: the tracker's public API.",
    )
    reports_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Clockify and Toggl reports API. Blank: the public one.",
    )

    class Meta:
        model = TrackerConnection
        fields = [
            "name",
            "kind",
            "account_id",
            "token",
            "is_enabled",
            "options",
            "base_url",
            "reports_url",
            "sync_from",
            "window_days",
            "window_every_hours",
            "overlap_minutes",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not cleaned.get("token") and not (self.instance.pk and self.instance.token_encrypted):
            self.add_error("token", "A new connection needs its API token.")
        kind, options = cleaned.get("kind"), cleaned.get("options")
        if kind and options is not None:
            try:
                sync.sync_options(kind=kind, options=options)
            except sync.ConnectionMisconfigured as exc:
                self.add_error("options", str(exc))
        if cleaned.get("window_every_hours") == 0:
            self.add_error("window_every_hours", "At least 1.")
        return cleaned


def _status_line(connection: TrackerConnection) -> str:
    if not connection.is_enabled:
        return "Disabled"
    text = connection.get_status_display()
    if connection.retry_after:
        text += f", waiting for a rate limit until {connection.retry_after:%Y-%m-%d %H:%M}"
    return text


@admin.register(TrackerConnection)
class TrackerConnectionAdmin(admin.ModelAdmin):
    form = TrackerConnectionForm
    list_display = (
        "name",
        "kind",
        "account_id",
        "status_shown",
        "last_success_at",
        "status_reason_shown",
        "last_check_shown",
        "runs_link",
    )
    list_filter = ("kind", "status", "is_enabled")
    search_fields = ("name", "account_id")
    actions = ["sync_now", "read_again"]
    readonly_fields = (
        "status_shown",
        "status_reason",
        "status_changed_at",
        "last_success_at",
        "token_saved",
        "cursor",
        "window_checked_at",
        "retry_after",
        "consecutive_failures",
        "backfill_position",
        "runs_link",
        "last_check_result",
        "last_checked_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "kind", "account_id", "token", "token_saved", "is_enabled")}),
        (
            "State",
            {
                "fields": (
                    "status_shown",
                    "status_reason",
                    "status_changed_at",
                    "last_success_at",
                    "consecutive_failures",
                    "retry_after",
                    "runs_link",
                    "last_check_result",
                    "last_checked_at",
                )
            },
        ),
        (
            "Sync",
            {
                "fields": (
                    "sync_from",
                    "window_days",
                    "window_every_hours",
                    "overlap_minutes",
                    "cursor",
                    "window_checked_at",
                    "backfill_position",
                    "options",
                    "base_url",
                    "reports_url",
                )
            },
        ),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:  # the state of a connection that does not exist yet is noise
            return [fieldset for fieldset in self.fieldsets if fieldset[0] != "State"]
        return self.fieldsets

    @admin.display(description="Last check", ordering="last_checked_at")
    def last_check_shown(self, connection: TrackerConnection) -> str:
        """`manage.py check_connections`' last word on this connection, and when."""
        if connection.last_checked_at is None:
            return "never checked"
        when = timezone.localtime(connection.last_checked_at)
        return f"{connection.last_check_result} ({when:%Y-%m-%d %H:%M})"

    @admin.display(description="Status", ordering="status")
    def status_shown(self, connection: TrackerConnection) -> str:
        return _status_line(connection)

    @admin.display(description="Why")
    def status_reason_shown(self, connection: TrackerConnection) -> str:
        reason = connection.status_reason
        return reason if len(reason) <= 160 else reason[:160] + "…"

    @admin.display(description="API token")
    def token_saved(self, connection: TrackerConnection) -> str:
        if not connection.token_encrypted:
            return "not saved"
        when = f" on {connection.token_set_at:%Y-%m-%d %H:%M}" if connection.token_set_at else ""
        return f"saved{when} (encrypted; never shown)"

    @admin.display(description="Runs")
    def runs_link(self, connection: TrackerConnection) -> str:
        if not connection.pk:
            return ""
        url = (
            reverse("admin:timesheets_syncrun_changelist")
            + f"?connection__id__exact={connection.pk}"
        )
        return format_html('<a href="{}">Sync runs</a>', url)

    def save_model(
        self, request: HttpRequest, obj: TrackerConnection, form: Any, change: bool
    ) -> None:
        token = form.cleaned_data.get("token")
        if token:
            sync.set_token(connection=obj, token=token)
        elif change and obj.status == TrackerConnection.Status.STOPPED and form.changed_data:
            # Someone corrected the connection: try it again on the next run.
            obj.status = TrackerConnection.Status.ACTIVE
            obj.status_reason = "connection edited; the next run tries again"
            obj.consecutive_failures = 0
        super().save_model(request, obj, form, change)

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[TrackerConnection]) -> None:
        started, refused = [], []
        for connection in queryset:
            if not connection.is_enabled or connection.status == TrackerConnection.Status.STOPPED:
                refused.append(f"{connection.name} ({_status_line(connection).lower()})")
                continue
            _enqueue_sync(connection.pk, SyncRun.Trigger.ADMIN)
            started.append(connection.name)
        if started:
            self.message_user(
                request,
                f"Sync queued for {', '.join(started)}; see Sync runs for its progress.",
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                f"Not synced: {', '.join(refused)}. Fix the connection (a new token, or its "
                "settings) and save it first.",
                messages.WARNING,
            )

    @admin.action(description="Read everything again (from Sync from)", permissions=["change"])
    def read_again(self, request: HttpRequest, queryset: QuerySet[TrackerConnection]) -> None:
        count = queryset.update(cursor=None, backfill_position=None, window_checked_at=None)
        self.message_user(
            request,
            f"{count} connection(s) will be read again in full by their next run; entries that "
            "did not change stay as they are.",
            messages.SUCCESS,
        )


@admin.register(SyncRun)
class SyncRunAdmin(_ReadOnlyAdmin):
    list_display = (
        "started_at",
        "connection",
        "trigger",
        "status",
        "pages",
        "fetched",
        "created",
        "updated",
        "deleted",
        "unchanged",
        "frozen",
        "held",
        "errors",
        "duration",
        "progress",
    )
    list_filter = ("status", "trigger", "connection")
    list_select_related = ("connection",)
    date_hierarchy = "started_at"

    @admin.display(description="Took")
    def duration(self, run: SyncRun) -> str:
        if run.finished_at is None:
            return ""
        return f"{int((run.finished_at - run.started_at).total_seconds())} s"
