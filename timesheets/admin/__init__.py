"""Admin for time tracking: the firm's clients, projects and people, and the imported entries.

Time entries and import batches are facts reported by the trackers: the admin shows them and
never edits them by hand. New entries arrive through the "Import CSV" page, which calls the same
service as `manage.py import_entries`, and through the API sync of the tracker connections
(timesheets.sync), whose runs, mappings and waiting entries are shown here too.

Importing the modules registers their admins:
- directory: clients, projects, people
- entries: time entries, import batches and the CSV upload page
- trackers: tracker connections and sync runs
- mappings: external people and projects, held entries
"""

from timesheets.admin import directory, entries, mappings, trackers
from timesheets.admin.common import NOTES_PREVIEW_CHARS, format_hours_minutes

__all__ = [
    "NOTES_PREVIEW_CHARS",
    "directory",
    "entries",
    "format_hours_minutes",
    "mappings",
    "trackers",
]
