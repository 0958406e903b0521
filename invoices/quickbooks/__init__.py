"""QuickBooks Online services: connecting, mapping, pushing approved invoices exactly once, and
reading their status back.

Exactly once (reliability notes 1.2, 1.5 and 4):

* `request_push` writes an `InvoicePush` row whose `request_id` is derived from the invoice and
  a generation (`billables-<invoice>-g<generation>`) *before* anything goes out, and enqueues
  the task after commit. The row, not the task, is the unit of work.
* `push` may run any number of times for a row (django-q2 delivers at least once; a killed
  worker's task runs again). A pushed row is never sent again; every retry of a row, in the
  same run or a later one, sends the same `requestid`, so QuickBooks answers a repeat with the
  invoice it already created instead of creating a second.
* A new generation (a new `requestid`) is made only by a person: "retry" after a failure, or
  "push again" after the QuickBooks invoice was voided. Before creating, a new generation, and
  any try after one whose outcome is unknown, asks QuickBooks for an invoice with our number
  and our marker in its private note and adopts it if there is one (how long Intuit remembers
  a requestid is not documented).
* No second open QuickBooks invoice for the same hours: a push is refused while entries of the
  invoice are still billed on the open QuickBooks invoice of an earlier invoice of ours that
  was voided here, unless a person overrides it with a reason (audited). `void_in_quickbooks`
  voids that QuickBooks invoice (a task, safe to run twice).
* One push at a time per QuickBooks company (a PostgreSQL advisory lock), requests paced
  under QuickBooks' 500 per minute. Throttling and transient failures are retried with backoff
  inside the run, then left queued for the stalled-push sweep, both bounded
  (`QBO_PUSH_MAX_TRIES` per run, `QBO_PUSH_MAX_ATTEMPTS` in all); validation failures are not
  retried but shown in plain words.

Modules:

    errors.py           what callers catch: not connected, connect refused, push refused or busy
    connection.py       the connection row, access tokens refreshed under a lock, `with_api`
    connect.py          the OAuth connect flow, and disconnecting
    mapping.py          clients to customers, categories to items, what an invoice still lacks
    queueing.py         requesting a push (a row with its request id) and enqueueing its task
    pushing.py          one push, exactly once, paced and retried
    invoice_payload.py  our invoice as QuickBooks should hold it
    status.py           reading the pushed invoices' status back
    voiding.py          voiding in QuickBooks the invoice of an invoice voided here
"""

from invoices.quickbooks.connect import (
    OAUTH_STATE_LIFETIME,
    complete_connect,
    disconnect,
    start_connect,
)
from invoices.quickbooks.connection import (
    ACCESS_TOKEN_MARGIN,
    access_token,
    load_connection,
    with_api,
)
from invoices.quickbooks.errors import ConnectRefused, NotConnected, PushBusy, PushRefused
from invoices.quickbooks.invoice_payload import invoice_input
from invoices.quickbooks.mapping import (
    MappingSummary,
    MissingMappings,
    create_customers,
    create_items,
    fetch_customers,
    fetch_items,
    map_category,
    map_client,
    match_categories,
    match_clients,
    missing_mappings,
    set_default_item,
    unmap_category,
    unmap_client,
)
from invoices.quickbooks.pushing import LOCK_NAMESPACE, push
from invoices.quickbooks.queueing import (
    ACTIVE,
    FINAL_REMOTE_STATUSES,
    IN_QUICKBOOKS,
    PUSH_TASK,
    EarlierOpenInvoice,
    approve_and_push,
    earlier_open_invoices,
    enqueue_push,
    push_again,
    request_id_for,
    request_push,
    resume_stalled_pushes,
    resume_waiting_pushes,
)
from invoices.quickbooks.status import StatusSummary, refresh_statuses
from invoices.quickbooks.voiding import (
    VOID_TASK,
    last_void_event,
    open_push,
    void_in_quickbooks,
    void_pushed_invoice,
)

__all__ = [
    "ACCESS_TOKEN_MARGIN",
    "ACTIVE",
    "FINAL_REMOTE_STATUSES",
    "IN_QUICKBOOKS",
    "LOCK_NAMESPACE",
    "OAUTH_STATE_LIFETIME",
    "PUSH_TASK",
    "VOID_TASK",
    "ConnectRefused",
    "EarlierOpenInvoice",
    "MappingSummary",
    "MissingMappings",
    "NotConnected",
    "PushBusy",
    "PushRefused",
    "StatusSummary",
    "access_token",
    "approve_and_push",
    "complete_connect",
    "create_customers",
    "create_items",
    "disconnect",
    "earlier_open_invoices",
    "enqueue_push",
    "fetch_customers",
    "fetch_items",
    "invoice_input",
    "last_void_event",
    "load_connection",
    "map_category",
    "map_client",
    "match_categories",
    "match_clients",
    "missing_mappings",
    "open_push",
    "push",
    "push_again",
    "refresh_statuses",
    "request_id_for",
    "request_push",
    "resume_stalled_pushes",
    "resume_waiting_pushes",
    "set_default_item",
    "start_connect",
    "unmap_category",
    "unmap_client",
    "void_in_quickbooks",
    "void_pushed_invoice",
    "with_api",
]
