"""Domain events of time tracking, for apps that build on it (billing) without a reverse import.

`entries_imported` is sent after an import (file or sync) has committed, with:
- `entry_ids`: entries created or updated by it (to classify);
- `frozen_entry_ids`: entries on an approved invoice whose source changed (kept as billed,
  the change recorded in `TimeEntry.pending_source_change`; billing flags their invoices).
"""

from django.dispatch import Signal

entries_imported = Signal()
