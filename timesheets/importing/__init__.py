"""Import of time-tracker exports, CSV or XLSX (Harvest "Detailed time", Clockify "Detailed
report", Toggl Track "Detailed").

    result = import_file(name="harvest.csv", content=data, user=request.user)
    result = import_file(name=path.name, stream=path.open("rb"))  # read in chunks, never whole

A file is stored whole or not at all: ImportRejected lists every problem (row, column, reason,
hint) and nothing is written. A file streams through in chunks (`streaming`); uploads too large
for a web request are imported by a task (`jobs`). Entries are keyed as explained in `keys`,
so re-importing a file or an overlapping export updates entries instead of duplicating them.
"""

from timesheets.importing.errors import ImportRejected, RowError
from timesheets.importing.limits import ImportLimits
from timesheets.importing.service import (
    INTERNAL_TIME_CHOICES,
    ImportResult,
    check_file_size,
    import_file,
    internal_client_name,
)
from timesheets.importing.values import DATE_ORDERS, DateOrder

__all__ = [
    "DATE_ORDERS",
    "INTERNAL_TIME_CHOICES",
    "DateOrder",
    "ImportLimits",
    "ImportRejected",
    "ImportResult",
    "RowError",
    "check_file_size",
    "import_file",
    "internal_client_name",
]
