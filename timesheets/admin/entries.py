"""Time entries and import batches, with the "Import CSV" upload page."""

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from django_q.tasks import async_task

from timesheets.admin.common import NOTES_PREVIEW_CHARS, _ReadOnlyAdmin, format_hours_minutes
from timesheets.importing import ImportRejected, check_file_size, jobs
from timesheets.importing.creating import ReviewNeeded
from timesheets.importing.jobs import background_bytes, job_errors
from timesheets.importing.service import import_or_review
from timesheets.models import (
    ImportBatch,
    ImportJob,
    TimeEntry,
)
from timesheets.tasks import queue_import_job

# What "Create and import" may create (creating.create_client/create_project/create_person).
CREATE_PERMISSIONS = ("timesheets.add_client", "timesheets.add_project", "timesheets.add_person")


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
        # The tracker's own billing state (billing semantics 10.2): an entry it calls invoiced,
        # or (for clients billed on approved time only) not approved, is held from billing.
        "tracker_invoiced",
        "tracker_approved",
        "source",
        "locked",
    )
    list_filter = (
        "source",
        "client",
        "locked",
        "tracker_invoiced",
        "tracker_approved",
        AtSourceFilter,
    )
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
        label="CSV or Excel exports",
        help_text="Harvest “Detailed time”, Clockify “Detailed report” or Toggl Track "
        "“Detailed” exports, as CSV or Excel (.xlsx). Each file is imported whole or not at "
        "all; large files are imported in the background, on a page that shows their progress.",
    )
    date_order = forms.ChoiceField(
        label="Date order",
        required=False,
        choices=[
            ("", "From the file (month first when it cannot tell; day first for 01.10.2026)"),
            ("mdy", "Month first: 10/02/2026 is 2 October"),
            ("dmy", "Day first: 02/10/2026 (or 02.10.2026, 02-10-2026) is 2 October"),
        ],
        help_text="Only for files whose dates all have day and month up to 12.",
    )
    internal_time = forms.ChoiceField(
        label="Rows without a client",
        required=False,
        choices=[
            ("", "As the setting IMPORT_INTERNAL_TIME says"),
            ("import", "Import as internal time (not billable)"),
            ("skip", "Skip them"),
        ],
        help_text="Projects without a client are internal time; either way they are counted.",
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
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        import_csv = path(
            "import-csv/",
            self.admin_site.admin_view(self.import_csv_view),
            name=f"{info}_import_csv",
        )
        import_job = path(
            "import-csv/job/<int:job_id>/",
            self.admin_site.admin_view(self.import_job_view),
            name=f"{info}_import_job",
        )
        review = path(
            "import-csv/job/<int:job_id>/review/",
            self.admin_site.admin_view(require_POST(self.import_review_view)),
            name=f"{info}_import_review",
        )
        return [import_csv, import_job, review, *super().get_urls()]

    def _url(self, view: str, *args: Any) -> str:
        name = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{view}"
        return reverse(name, args=args)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_import_csv": self.has_import_permission(request),
            "waiting_reviews": jobs.jobs_awaiting_review()
            if self.has_import_permission(request)
            else [],
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
                internal_time = form.cleaned_data["internal_time"] or None
                queued: list[ImportJob] = []
                held: list[ImportJob] = []
                for upload in form.cleaned_data["files"]:
                    name = upload.name or "upload.csv"
                    try:
                        # By its size first: an oversized upload is refused unread.
                        check_file_size(name=name, size=upload.size or 0)
                        if (upload.size or 0) > background_bytes():
                            # Too long for a request: a task imports it (timesheets.importing
                            # .jobs), and the job's page shows how far it got.
                            queued.append(
                                queue_import_job(
                                    upload=upload,
                                    user=request.user,
                                    date_order=date_order,
                                    internal_time=internal_time,
                                )
                            )
                            continue
                        result = import_or_review(
                            name=name,
                            stream=upload.file,
                            user=request.user,
                            date_order=date_order,
                            internal_time=internal_time,
                        )
                    except ReviewNeeded as needed:
                        held.append(self._hold(upload, request, needed, date_order, internal_time))
                    except ImportRejected as rejection:
                        rejections.append(rejection)
                    else:
                        self.message_user(
                            request,
                            f"{result.batch.filename}: {result.summary()}",
                            messages.SUCCESS,
                        )
                for job in queued:
                    self.message_user(
                        request,
                        format_html(
                            '{}: queued for import in the background; <a href="{}">see its '
                            "progress</a>",
                            job.filename,
                            self._url("import_job", job.pk),
                        ),
                        messages.INFO,
                    )
                for job in held:
                    self.message_user(
                        request,
                        format_html(
                            "{}: names clients, projects or people the firm does not know; "
                            '<a href="{}">review them, then create them and import</a>',
                            job.filename,
                            self._url("import_job", job.pk),
                        ),
                        messages.WARNING,
                    )
                if not rejections:
                    if len(queued) + len(held) == 1:
                        return redirect(self._url("import_job", (queued + held)[0].pk))
                    return redirect(self._url("changelist"))
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

    @staticmethod
    def _hold(
        upload: UploadedFile,
        request: HttpRequest,
        needed: ReviewNeeded,
        date_order: str | None,
        internal_time: str | None,
    ) -> ImportJob:
        """Keep an upload that would create records, as a job waiting for review."""
        user = request.user if request.user.is_authenticated else None
        job = jobs.store_upload(
            upload=upload, user=user, date_order=date_order, internal_time=internal_time
        )
        jobs.hold_for_review(job, needed.created)
        return job

    def import_review_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """The review page's buttons: "Create and import" imports the file again with the
        listed records approved (in the request when it is small, else in the background);
        "Cancel" drops the file, having created nothing."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        if "cancel" not in request.POST and not request.user.has_perms(CREATE_PERMISSIONS):
            self.message_user(
                request,
                "Creating clients, projects and people needs the permission to add each; ask "
                "someone who has it to confirm this import.",
                messages.ERROR,
            )
            return redirect(self._url("import_job", job_id))
        if "cancel" in request.POST:
            if jobs.cancel_review(job_id=job_id):
                self.message_user(request, "Cancelled: nothing was created or imported.")
            return redirect(self._url("import_csv"))
        job = jobs.confirm_review(job_id=job_id)
        if job is None:
            self.message_user(request, "This file no longer waits for review.", messages.WARNING)
            return redirect(self._url("import_job", job_id))
        if job.size > background_bytes():
            transaction.on_commit(
                partial(
                    async_task,
                    "timesheets.tasks.import_job_task",
                    job.pk,
                    q_options={"group": f"import-{job.pk}"},
                )
            )
            return redirect(self._url("import_job", job.pk))
        done = jobs.run_import_job(job_id=job.pk)
        if done is not None and done.status == ImportJob.Status.SUCCEEDED:
            self.message_user(request, f"{done.filename}: {done.summary}", messages.SUCCESS)
            return redirect(self._url("changelist"))
        return redirect(self._url("import_job", job.pk))

    def import_job_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """A background import's progress (the page reloads itself until the job is done),
        then its summary or its errors."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob.objects.select_related("batch"), pk=job_id)
        percent = min(100, job.rows_read * 100 // job.rows_total) if job.rows_total else 0
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Import of {job.filename}",
            "job": job,
            "percent": percent,
            "errors": job_errors(job),
            "review": jobs.job_review(job) if jobs.awaits_review(job) else None,
            "review_url": self._url("import_review", job.pk),
            "import_csv_url": self._url("import_csv"),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/timesheets/importbatch/import_job.html", context)
