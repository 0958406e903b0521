"""Admin for time tracking: the firm's clients, projects and people, and the imported entries.

Time entries and import batches are facts reported by the trackers: the admin shows them and
never edits them by hand. New entries arrive through the "Import CSV" page, which calls the same
service as `manage.py import_entries`, and through the API sync of the tracker connections
(timesheets.sync), whose runs, mappings and waiting entries are shown here too.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django_q.tasks import async_task

from timesheets import sync
from timesheets.importing import ImportRejected, import_file
from timesheets.models import (
    Client,
    ExternalPerson,
    ExternalProject,
    HeldEntry,
    ImportBatch,
    Person,
    Project,
    SyncRun,
    TimeEntry,
    TrackerConnection,
)

NOTES_PREVIEW_CHARS = 80


def format_hours_minutes(seconds: int) -> str:
    """H:MM, to the nearest minute (half a minute up), as the trackers show durations."""
    minutes = (seconds + 30) // 60
    return f"{minutes // 60}:{minutes % 60:02d}"


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "client", "billing")
    list_filter = ("billing", "client")
    list_select_related = ("client",)
    search_fields = ("code", "name", "client__name")


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "role")
    list_filter = ("role",)
    search_fields = ("email", "name")


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only an import writes: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AtSourceFilter(admin.SimpleListFilter):
    """Entries deleted at the source are hidden unless asked for (they are never billed)."""

    title = "at the source"
    parameter_name = "at_source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("deleted", "Deleted at the source"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Present",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[TimeEntry]) -> QuerySet[TimeEntry]:
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "all":
            return queryset
        return queryset.filter(deleted_at__isnull=True)


@admin.register(TimeEntry)
class TimeEntryAdmin(_ReadOnlyAdmin):
    list_display = (
        "date",
        "person",
        "client",
        "project",
        "task",
        "duration",
        "notes_preview",
        "tracker_billable",
        "source",
        "locked",
    )
    list_filter = ("source", "client", "locked", AtSourceFilter)
    list_select_related = ("person", "client", "project")
    search_fields = ("notes", "task")

    def get_queryset(self, request: HttpRequest) -> QuerySet[TimeEntry]:
        # Deleted entries too (the filter above hides them by default), so that a deleted
        # entry's own page and history stay reachable.
        return TimeEntry.all_objects.get_queryset().select_related(*self.list_select_related)

    @admin.display(description="Duration", ordering="duration_seconds")
    def duration(self, entry: TimeEntry) -> str:
        return format_hours_minutes(entry.duration_seconds)

    @admin.display(description="Notes", ordering="notes")
    def notes_preview(self, entry: TimeEntry) -> str:
        # Shown as text (the admin escapes it): notes such as "=HYPERLINK(...)" stay inert.
        notes = entry.notes
        return notes if len(notes) <= NOTES_PREVIEW_CHARS else notes[:NOTES_PREVIEW_CHARS] + "…"


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented pattern for `multiple`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        clean_one = super().clean
        files = list(data) if isinstance(data, list | tuple) else [data]
        # No file at all is cleaned as one missing file, so that `required` is enforced.
        cleaned = [clean_one(item, initial) for item in files or [None]]
        return [upload for upload in cleaned if upload]


class ImportCsvForm(forms.Form):
    files = MultipleFileField(
        label="CSV exports",
        help_text="Harvest “Detailed time”, Clockify “Detailed report” or Toggl Track "
        "“Detailed” exports. Each file is imported whole or not at all.",
    )
    date_order = forms.ChoiceField(
        label="Date order",
        required=False,
        choices=[
            ("", "From the file (month first when it cannot tell)"),
            ("mdy", "Month first: 10/02/2026 is 2 October"),
            ("dmy", "Day first: 02/10/2026 is 2 October"),
        ],
        help_text="Only for files whose slash dates all have day and month up to 12.",
    )


@admin.register(ImportBatch)
class ImportBatchAdmin(_ReadOnlyAdmin):
    list_display = (
        "imported_at",
        "filename",
        "source",
        "rows",
        "created",
        "updated",
        "unchanged",
        "frozen_changes",
        "imported_by",
    )
    list_filter = ("source",)
    list_select_related = ("imported_by",)
    search_fields = ("filename", "sha256")

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")

    def get_urls(self) -> list[URLPattern]:
        import_csv = path(
            "import-csv/",
            self.admin_site.admin_view(self.import_csv_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_import_csv",
        )
        return [import_csv, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_import_csv": self.has_import_permission(request),
            "import_csv_url": reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_import_csv"
            ),
        }
        return super().changelist_view(request, extra_context)

    def import_csv_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        rejections: list[ImportRejected] = []
        if request.method == "POST":
            form = ImportCsvForm(request.POST, request.FILES)
            if form.is_valid():
                date_order = form.cleaned_data["date_order"] or None
                for upload in form.cleaned_data["files"]:
                    try:
                        result = import_file(
                            name=upload.name or "upload.csv",
                            content=upload.read(),
                            user=request.user,
                            date_order=date_order,
                        )
                    except ImportRejected as rejection:
                        rejections.append(rejection)
                    else:
                        self.message_user(
                            request,
                            f"{result.batch.filename}: {result.summary()}",
                            messages.SUCCESS,
                        )
                if not rejections:
                    return redirect(
                        f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}"
                        "_changelist"
                    )
        else:
            form = ImportCsvForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import CSV",
            "form": form,
            "rejections": rejections,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/timesheets/importbatch/import_csv.html", context)


# --- tracker connections and their sync --------------------------------------------------------


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


class MappedFilter(admin.SimpleListFilter):
    title = "mapped"
    parameter_name = "mapped"
    target = "person"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Waiting to be mapped"), ("yes", "Mapped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.target}__isnull": self.value() == "no"})
        return queryset


class ProjectMappedFilter(MappedFilter):
    target = "project"


class _MappingAdmin(admin.ModelAdmin):
    """A tracker's users or projects: the unmapped ones first, with how many entries wait for
    each. Mapping one (or a new person/project matched by the next run) releases its entries."""

    target = "person"
    list_select_related = ("connection",)
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Annotated before ordering: the ordering uses the count.
        queryset = self.model._default_manager.get_queryset()
        return queryset.annotate(waiting=Count("held_entries")).order_by(
            *self.get_ordering(request)
        )

    def get_ordering(self, request: HttpRequest) -> Any:
        return (F(f"{self.target}_id").asc(nulls_first=True), "-waiting", "name")

    @admin.display(description="Entries waiting", ordering="waiting")
    def waiting(self, obj: Any) -> int:
        return obj.waiting

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the sync creates them as it meets them

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if self.target in form.changed_data:
            obj.matched_by = "admin" if getattr(obj, self.target) is not None else ""
        super().save_model(request, obj, form, change)
        if getattr(obj, self.target) is not None and obj.held_entries.exists():
            _enqueue_sync(obj.connection_id, SyncRun.Trigger.MAPPING)
            self.message_user(
                request,
                f"The entries waiting for {obj} are synced now.",
                messages.SUCCESS,
            )


@admin.register(ExternalPerson)
class ExternalPersonAdmin(_MappingAdmin):
    list_display = ("name", "email", "connection", "person", "matched_by", "waiting")
    list_filter = (MappedFilter, "connection", "matched_by")
    search_fields = ("name", "email", "external_id")
    autocomplete_fields = ("person",)
    fields = ("connection", "external_id", "name", "email", "person", "matched_by")
    readonly_fields = ("connection", "external_id", "name", "email", "matched_by")


@admin.register(ExternalProject)
class ExternalProjectAdmin(_MappingAdmin):
    target = "project"
    list_display = ("name", "code", "client_name", "connection", "project", "matched_by", "waiting")
    list_filter = (ProjectMappedFilter, "connection", "matched_by")
    search_fields = ("name", "code", "client_name", "external_id")
    autocomplete_fields = ("project",)
    fields = ("connection", "external_id", "client_name", "name", "code", "project", "matched_by")
    readonly_fields = ("connection", "external_id", "client_name", "name", "code", "matched_by")


@admin.register(HeldEntry)
class HeldEntryAdmin(_ReadOnlyAdmin):
    list_display = ("date", "connection", "external_person", "external_project", "hours", "notes")
    list_filter = ("connection",)
    list_select_related = ("connection", "external_person", "external_project")

    @admin.display(description="Duration")
    def hours(self, held: HeldEntry) -> str:
        return format_hours_minutes(int(held.data.get("duration_seconds") or 0))

    @admin.display(description="Notes")
    def notes(self, held: HeldEntry) -> str:
        notes = str(held.data.get("notes") or "")
        return notes if len(notes) <= NOTES_PREVIEW_CHARS else notes[:NOTES_PREVIEW_CHARS] + "…"
