"""A tracker's users and projects mapped to the firm's, and the entries waiting for them."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from timesheets.admin.common import NOTES_PREVIEW_CHARS, _ReadOnlyAdmin, format_hours_minutes
from timesheets.admin.trackers import _enqueue_sync
from timesheets.importing.creating import TrackerOnboarding, create_for_tracker, rolled_back
from timesheets.models import (
    ExternalPerson,
    ExternalProject,
    HeldEntry,
    SyncRun,
)


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
    actions = ["create_for_selected"]

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

    def _onboard(self, queryset: QuerySet[Any]) -> TrackerOnboarding:
        unmapped = list(queryset.filter(**{f"{self.target}__isnull": True}))
        if self.target == "person":
            return create_for_tracker(people=unmapped, projects=[])
        return create_for_tracker(people=[], projects=unmapped)

    @admin.action(description="Create the firm's records for the selected, and import")
    def create_for_selected(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        """Onboarding from a sync (issue 11 item 4): the selected unmapped users or projects
        get a person, or a project (and its client), created with the defaults, listed for
        review first; confirming creates them (the same service as the file import's
        create-missing), maps them and syncs their connections, which imports the waiting
        entries."""
        needed = ["timesheets.add_person"] if self.target == "person" else []
        if self.target == "project":
            needed = ["timesheets.add_client", "timesheets.add_project"]
        if not self.has_change_permission(request) or not request.user.has_perms(needed):
            raise PermissionDenied
        if request.POST.get("post") != "yes":
            # The review: the same creation, run and rolled back, so the list is exact.
            preview = rolled_back(lambda: self._onboard(queryset))
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Create and import: review what is new to the firm",
                "preview": preview,
                "queryset": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "action": "create_for_selected",
            }
            return TemplateResponse(request, "admin/timesheets/onboarding_review.html", context)
        done = self._onboard(queryset)
        for connection_id in set(queryset.values_list("connection_id", flat=True)):
            _enqueue_sync(connection_id, SyncRun.Trigger.MAPPING)
        created = done.created.summary() or "created nothing new"
        self.message_user(
            request,
            f"{created[0].upper()}{created[1:]}; {done.mapped} mapped, their waiting entries "
            "are synced now.",
            messages.SUCCESS,
        )
        for reason in done.not_created:
            self.message_user(request, f"Not mapped: {reason}", messages.WARNING)
        return None

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
