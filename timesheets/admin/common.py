"""Shared by the time-tracking admin: the read-only base and the duration format."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

NOTES_PREVIEW_CHARS = 80


def format_hours_minutes(seconds: int) -> str:
    """H:MM, to the nearest minute (half a minute up), as the trackers show durations."""
    minutes = (seconds + 30) // 60
    return f"{minutes // 60}:{minutes % 60:02d}"


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only an import writes: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
