"""Admin for time tracking: the firm's clients, projects and people, and the imported entries.

Time entries and import batches are facts reported by the trackers: the admin shows them and
never edits them by hand. New entries arrive through the "Import CSV" page, which calls the same
service as `manage.py import_entries`.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from timesheets.importing import ImportRejected, import_file
from timesheets.models import Client, ImportBatch, Person, Project, TimeEntry

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
    list_filter = ("source", "client", "locked")
    list_select_related = ("person", "client", "project")
    search_fields = ("notes", "task")

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
