"""The review desk: billing configuration, classifications and invoices in the Django admin.

Every write goes through the same services as the commands (drafting, approval, review); the
admin only collects input and turns named errors into messages. Pages: the month-end overview,
the invoice review page (lines, entries, derivation, pending entries resolved in place, flags,
rebuild / approve / void), a printable client-facing invoice, rule editing with a what-if
preview, and the audit trail. Changelists stay at a fixed number of queries whatever the
number of rows (reliability notes 5.5).

One module per part; importing them registers their admins (Django's autodiscover imports
this package):

- `configuration`: the firm, categories, classification rules (with preview), rates, client
  policies
- `classification`: every entry's classification and a reviewer's correction, with the review
  queue mixed in (`review_queue`: pending entries grouped by client and note, one decision per
  group, "Make this a rule", "Rebuild all stale drafts")
- `invoices`: the invoice list and its actions, with the review page (`review`) and the month
  end (`overview`) mixed in; invoice events
- `history`: the audit trail
- `model_tier`: the language-model tier's runs, requests and per-tier counts
- `quickbooks_connection`, `quickbooks`: the QuickBooks connection and mapping pages, and
  pushing from the invoice pages (this replaces the invoice admin with one that adds QuickBooks)
- `ledes`: the LEDES 1998B download of an approved invoice (wraps the QuickBooks invoice admin)
"""

from django.contrib import admin

from invoices.admin import (  # noqa: F401 (registers the admins)
    classification,
    configuration,
    engagements,
    history,
    invoices,
    ledes,
    model_tier,
    quickbooks,
    quickbooks_connection,
    review_queue,
    tax,
)
from invoices.two_factor import AdminLoginForm

# --- The admin site: month end on the index page, optional two-factor login ---------------

admin.site.index_template = "admin/billables/index.html"
admin.site.login_form = AdminLoginForm
admin.site.login_template = "admin/billables/login.html"
