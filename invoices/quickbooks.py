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
  "push again" after the QuickBooks invoice was voided. Before creating, a new generation asks
  QuickBooks for an invoice with our number and our marker in its private note and adopts it
  if there is one (how long Intuit remembers a requestid is not documented).
* One push at a time per QuickBooks company (a PostgreSQL advisory lock), requests paced
  under QuickBooks' 500 per minute. Throttling and transient failures are retried with backoff
  inside the run, then left queued for the stalled-push sweep, both bounded
  (`QBO_PUSH_MAX_TRIES` per run, `QBO_PUSH_MAX_ATTEMPTS` in all); validation failures are not
  retried but shown in plain words.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from integrations import quickbooks as qbo
from integrations.encryption import decrypt, encrypt
from invoices.approval import approve_invoice
from invoices.models import (
    Category,
    CustomerMapping,
    Flag,
    Invoice,
    InvoiceEvent,
    InvoicePush,
    InvoiceStatus,
    ItemMapping,
    QuickBooksConnection,
)
from timesheets.models import Client

logger = logging.getLogger(__name__)
T = TypeVar("T")

ACCESS_TOKEN_MARGIN = timedelta(minutes=5)
OAUTH_STATE_LIFETIME = timedelta(minutes=15)
ACTIVE = (
    InvoicePush.Status.QUEUED,
    InvoicePush.Status.PUSHING,
    InvoicePush.Status.PUSHED,
    InvoicePush.Status.MISMATCH,
)
IN_QUICKBOOKS = (InvoicePush.Status.PUSHED, InvoicePush.Status.MISMATCH)
FINAL_REMOTE_STATUSES = ("voided", "deleted")
PUSH_TASK = "invoices.tasks_quickbooks.push_invoice_task"
LOCK_NAMESPACE = "billables-qbo-push"

# Indirection so tests can count or skip waits without patching the time module.
_sleep: Callable[[float], None] = time.sleep


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- Errors -------------------------------------------------------------------------------


class NotConnected(Exception):
    """QuickBooks has not been connected (or was disconnected)."""


class ConnectRefused(Exception):
    """The OAuth callback cannot be accepted; the message says why."""


class PushRefused(Exception):
    """The invoice cannot be sent now; the message says exactly what to do."""


class PushBusy(Exception):
    """Another push to this QuickBooks company held the lock for too long; the row stays
    queued and the stalled-push sweep sends it."""


# --- Connection and tokens ------------------------------------------------------------------


def load_connection() -> QuickBooksConnection:
    conn, _ = QuickBooksConnection.objects.get_or_create(
        pk=1, defaults={"environment": qbo.environment_label()}
    )
    return conn


def _oauth_config(redirect_uri: str = "") -> qbo.OAuthConfig:
    return qbo.OAuthConfig.from_settings(
        redirect_uri=redirect_uri or _setting("QBO_REDIRECT_URI", "")
    )


def start_connect(*, redirect_uri: str) -> str:
    """Begin the OAuth flow: store a fresh single-use state, return Intuit's consent URL."""
    config = _oauth_config(redirect_uri)
    # The issue time is part of the state, so an old state is refused without another field.
    state = f"{secrets.token_urlsafe(24)}.{int(timezone.now().timestamp())}"
    url = qbo.authorization_url(config=config, state=state)
    conn = load_connection()
    conn.oauth_state = state
    conn.save(update_fields=["oauth_state", "updated_at"])
    return url


def complete_connect(
    *, state: str, code: str, realm_id: str, redirect_uri: str, user=None, error: str = ""
) -> QuickBooksConnection:
    """The OAuth callback: check the state, exchange the code, store realm and tokens
    encrypted. A different company than before clears the mappings (they name its records)."""
    with transaction.atomic():
        conn = QuickBooksConnection.objects.select_for_update().get_or_create(pk=1)[0]
        expected = conn.oauth_state
        conn.oauth_state = ""  # single use, whatever happens next
        conn.save(update_fields=["oauth_state", "updated_at"])
    if not expected or not state or not secrets.compare_digest(expected, state):
        raise ConnectRefused(
            "QuickBooks' answer does not belong to a connection started here (the state does "
            "not match); start again with the Connect button"
        )
    issued = expected.rsplit(".", 1)[-1]
    if not issued.isdigit() or timezone.now().timestamp() - int(issued) > (
        OAUTH_STATE_LIFETIME.total_seconds()
    ):
        raise ConnectRefused("the connection attempt is too old; start again with Connect")
    if error:
        raise ConnectRefused(f"QuickBooks did not grant access ({error}); nothing changed")
    if not code or not realm_id:
        raise ConnectRefused("QuickBooks' answer has no authorization code or company id")
    tokens = qbo.exchange_code(config=_oauth_config(redirect_uri), code=code, realm_id=realm_id)
    now = timezone.now()
    with transaction.atomic():
        conn = QuickBooksConnection.objects.select_for_update().get(pk=1)
        other_company = bool(conn.realm_id) and conn.realm_id != realm_id
        if other_company:
            CustomerMapping.objects.all().delete()
            ItemMapping.objects.all().delete()
            conn.default_item_id = conn.default_item_name = ""
        conn.realm_id = realm_id
        conn.environment = qbo.environment_label()
        conn.status = QuickBooksConnection.Status.CONNECTED
        conn.connected_at = now
        conn.last_error = ""
        _store_tokens(conn, tokens, now)
        transaction.on_commit(resume_waiting_pushes)
    logger.info("QuickBooks company %s connected by %s", realm_id, user)
    return conn


def _store_tokens(conn: QuickBooksConnection, tokens: qbo.Tokens, now) -> None:
    conn.access_token_encrypted = encrypt(tokens.access_token)
    conn.refresh_token_encrypted = encrypt(tokens.refresh_token)
    conn.access_token_expires_at = now + timedelta(seconds=tokens.expires_in_seconds)
    if tokens.refresh_expires_in_seconds:
        conn.refresh_token_expires_at = now + timedelta(seconds=tokens.refresh_expires_in_seconds)
    conn.save()


def _require_connected(conn: QuickBooksConnection | None) -> QuickBooksConnection:
    if conn is None or conn.status == QuickBooksConnection.Status.DISCONNECTED:
        raise NotConnected("QuickBooks is not connected: connect it on the QuickBooks page")
    if conn.status == QuickBooksConnection.Status.NEEDS_RECONNECT:
        raise qbo.QuickBooksReconnectRequired(
            "QuickBooks needs reconnecting: " + (conn.last_error or "the connection expired")
        )
    return conn


def access_token(*, rejected: str = "") -> tuple[str, str]:
    """(realm id, a valid access token), refreshing first when it expires within 5 minutes or
    when QuickBooks just rejected `rejected`."""
    conn = _require_connected(QuickBooksConnection.objects.filter(pk=1).first())
    expires = conn.access_token_expires_at
    if not rejected and expires and expires > timezone.now() + ACCESS_TOKEN_MARGIN:
        return conn.realm_id, decrypt(conn.access_token_encrypted)
    return _refresh(rejected=rejected)


def _refresh(*, rejected: str) -> tuple[str, str]:
    """Refresh under a row lock so two workers never both spend the refresh token; the rotated
    refresh token is stored in the same transaction, every time."""
    failure: qbo.QuickBooksReconnectRequired | None = None
    with transaction.atomic():
        conn = _require_connected(QuickBooksConnection.objects.select_for_update().get(pk=1))
        current = decrypt(conn.access_token_encrypted)
        now = timezone.now()
        expires = conn.access_token_expires_at
        fresh = bool(expires and expires > now + ACCESS_TOKEN_MARGIN)
        if fresh and (not rejected or current != rejected):
            return conn.realm_id, current  # another worker refreshed while we waited
        try:
            tokens = qbo.refresh_tokens(
                config=_oauth_config(), refresh_token=decrypt(conn.refresh_token_encrypted)
            )
        except qbo.QuickBooksReconnectRequired as exc:
            # Not retried: a person reconnects. Saved (the transaction commits) before raising.
            conn.status = QuickBooksConnection.Status.NEEDS_RECONNECT
            conn.last_error = exc.message
            conn.save(update_fields=["status", "last_error", "updated_at"])
            failure = exc
        else:
            _store_tokens(conn, tokens, now)
            return conn.realm_id, tokens.access_token
    raise failure


def _api(realm_id: str, token: str) -> qbo.QuickBooksApi:
    return qbo.QuickBooksApi(
        qbo.ApiConfig(
            base_url=qbo.api_base_url(),
            realm_id=realm_id,
            access_token=token,
            client_id=settings.QBO_CLIENT_ID,
            timeouts=qbo.configured_timeouts(),
            request_interval_seconds=qbo.request_interval_seconds(),
        )
    )


def with_api(call: Callable[[qbo.QuickBooksApi], T]) -> T:
    """Run `call` with a valid token; after a 401 refresh once and run it again."""
    realm_id, token = access_token()
    try:
        return call(_api(realm_id, token))
    except qbo.QuickBooksAuthExpired:
        realm_id, token = access_token(rejected=token)
        return call(_api(realm_id, token))


def disconnect(*, user=None) -> None:
    """Forget the tokens here (revoking at Intuit is done from QuickBooks' app settings)."""
    logger.info("QuickBooks disconnected by %s", user)
    conn = load_connection()
    conn.status = QuickBooksConnection.Status.DISCONNECTED
    conn.access_token_encrypted = conn.refresh_token_encrypted = ""
    conn.access_token_expires_at = conn.refresh_token_expires_at = None
    conn.save()


# --- Mapping --------------------------------------------------------------------------------


def fetch_customers() -> list[qbo.RemoteCustomer]:
    return sorted(
        with_api(lambda api: api.list_customers()), key=lambda c: c.display_name.casefold()
    )


def fetch_items() -> list[qbo.RemoteItem]:
    return sorted(with_api(lambda api: api.list_items()), key=lambda i: i.name.casefold())


def map_client(*, client: Client, customer_id: str, display_name: str) -> CustomerMapping:
    mapping, _ = CustomerMapping.objects.update_or_create(
        client=client, defaults={"qbo_customer_id": customer_id, "qbo_display_name": display_name}
    )
    return mapping


def map_category(*, category: Category, item_id: str, item_name: str) -> ItemMapping:
    mapping, _ = ItemMapping.objects.update_or_create(
        category=category, defaults={"qbo_item_id": item_id, "qbo_item_name": item_name}
    )
    return mapping


def set_default_item(*, item_id: str, item_name: str) -> None:
    conn = load_connection()
    conn.default_item_id, conn.default_item_name = item_id, item_name
    conn.save(update_fields=["default_item_id", "default_item_name", "updated_at"])


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass
class MappingSummary:
    matched: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{len(self.matched)} matched by name", f"{len(self.created)} created"]
        if self.unmatched:
            parts.append("no QuickBooks record named like: " + ", ".join(self.unmatched))
        return "; ".join(parts)


def match_clients(*, clients: list[Client]) -> MappingSummary:
    """Map each client to the QuickBooks customer with the same name (case and spacing
    ignored); clients without one are listed, nothing is created."""
    by_name = {_name_key(c.display_name): c for c in fetch_customers()}
    summary = MappingSummary()
    for client in clients:
        found = by_name.get(_name_key(client.name))
        if found is None:
            summary.unmatched.append(client.name)
            continue
        map_client(client=client, customer_id=found.id, display_name=found.display_name)
        summary.matched.append(client.name)
    return summary


def create_customers(*, clients: list[Client]) -> MappingSummary:
    """Map each unmapped client to the customer of the same name, creating the ones QuickBooks
    lacks. Looking up first matters: QuickBooks refuses a second customer, vendor or
    employee with the same name (6240)."""
    clients = [c for c in clients if not CustomerMapping.objects.filter(client=c).exists()]
    summary = MappingSummary()

    def run(api: qbo.QuickBooksApi) -> None:
        by_name = {_name_key(c.display_name): c for c in api.list_customers()}
        for client in clients:
            found = by_name.get(_name_key(client.name))
            if found is None:
                found = api.create_customer(client.name)
                summary.created.append(client.name)
            else:
                summary.matched.append(client.name)
            map_client(client=client, customer_id=found.id, display_name=found.display_name)

    with_api(run)
    return summary


def match_categories(*, categories: list[Category]) -> MappingSummary:
    by_name = {_name_key(i.name): i for i in fetch_items()}
    summary = MappingSummary()
    for category in categories:
        found = by_name.get(_name_key(category.name))
        if found is None:
            summary.unmatched.append(category.name)
            continue
        map_category(category=category, item_id=found.id, item_name=found.name)
        summary.matched.append(category.name)
    return summary


def create_items(*, categories: list[Category]) -> MappingSummary:
    """Map each unmapped category to the service item of the same name, creating missing ones
    (on the income account `QBO_INCOME_ACCOUNT_ID`, else QuickBooks' services income
    account)."""
    categories = [c for c in categories if not ItemMapping.objects.filter(category=c).exists()]
    summary = MappingSummary()

    def run(api: qbo.QuickBooksApi) -> None:
        by_name = {_name_key(i.name): i for i in api.list_items()}
        account: str | None = _setting("QBO_INCOME_ACCOUNT_ID", "") or None
        for category in categories:
            found = by_name.get(_name_key(category.name))
            if found is None:
                account = account or api.income_account_id()
                if account is None:
                    raise qbo.QuickBooksValidationError(
                        "QuickBooks has no income account for new items: create one in "
                        "QuickBooks or set QBO_INCOME_ACCOUNT_ID"
                    )
                found = api.create_service_item(category.name, income_account_id=account)
                summary.created.append(category.name)
            else:
                summary.matched.append(category.name)
            map_category(category=category, item_id=found.id, item_name=found.name)

    with_api(run)
    return summary


def unmap_client(*, client: Client) -> None:
    CustomerMapping.objects.filter(client=client).delete()


def unmap_category(*, category: Category) -> None:
    ItemMapping.objects.filter(category=category).delete()


@dataclass(frozen=True)
class MissingMappings:
    client: str | None
    categories: tuple[str, ...]
    default_item: bool

    def __bool__(self) -> bool:
        return bool(self.client or self.categories or self.default_item)

    def message(self, number: str) -> str:
        parts = []
        if self.client:
            parts.append(f'client "{self.client}" to a QuickBooks customer')
        if len(self.categories) == 1:
            parts.append(f'category "{self.categories[0]}" to a QuickBooks item')
        elif self.categories:
            names = ", ".join(f'"{name}"' for name in self.categories)
            parts.append(f"categories {names} to QuickBooks items")
        if self.default_item:
            parts.append("a default item (for lines without a category: discounts and adjustments)")
        return f"{number} cannot go to QuickBooks until these are mapped: {'; '.join(parts)}."


def missing_mappings(*, invoice: Invoice) -> MissingMappings:
    lines = list(invoice.lines.select_related("category"))
    used = {line.category_id: line.category for line in lines if line.category_id}
    mapped = set(
        ItemMapping.objects.filter(category_id__in=used).values_list("category_id", flat=True)
    )
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    return MissingMappings(
        client=None
        if CustomerMapping.objects.filter(client_id=invoice.client_id).exists()
        else invoice.client.name,
        categories=tuple(
            sorted((c.name for pk, c in used.items() if pk not in mapped), key=str.casefold)
        ),
        default_item=any(line.category_id is None for line in lines)
        and not (conn and conn.default_item_id),
    )


# --- Requesting a push ----------------------------------------------------------------------


def request_id_for(*, invoice_id: int, generation: int) -> str:
    request_id = f"billables-{invoice_id}-g{generation}"
    if len(request_id) > qbo.REQUEST_ID_MAX_LENGTH:  # 10 + 19 + 2 + 5 digits at most: never
        raise ValueError(f"request id {request_id!r} is longer than QuickBooks allows")
    return request_id


def _check_ready(*, invoice: Invoice, user) -> None:
    if user is not None and not user.has_perm("invoices.add_invoicepush"):
        raise PushRefused(
            "you do not have the permission to send invoices to QuickBooks "
            "(invoices.add_invoicepush)"
        )
    try:
        _require_connected(QuickBooksConnection.objects.filter(pk=1).first())
    except (NotConnected, qbo.QuickBooksReconnectRequired) as exc:
        raise PushRefused(str(exc)) from exc
    missing = missing_mappings(invoice=invoice)
    if missing:
        raise PushRefused(missing.message(invoice.number))


def request_push(*, invoice: Invoice, user) -> InvoicePush:
    """Queue an approved invoice for QuickBooks; a failed one gets a new generation (retry).
    Returns the queued push, or the one already queued."""
    with transaction.atomic():
        current = Invoice.objects.select_for_update().select_related("client").get(pk=invoice.pk)
        if current.status != InvoiceStatus.APPROVED:
            raise PushRefused(
                f"{current.number} is {current.get_status_display().lower()}; "
                "only approved invoices go to QuickBooks"
            )
        active = current.pushes.filter(status__in=ACTIVE).first()
        if active is not None and active.status in IN_QUICKBOOKS:
            raise PushRefused(
                f"{current.number} is already in QuickBooks (invoice {active.doc_number}, id "
                f"{active.qbo_invoice_id}); it is never sent twice"
            )
        if active is not None:
            return active  # already queued or being sent
        _check_ready(invoice=current, user=user)
        generation = (current.pushes.aggregate(g=Max("generation"))["g"] or 0) + 1
        push = InvoicePush.objects.create(
            invoice=current,
            generation=generation,
            requested_by=user,
            request_id=request_id_for(invoice_id=current.pk, generation=generation),
        )
        InvoiceEvent.objects.create(
            invoice=current,
            action="qbo_push_requested",
            actor=user,
            detail={"request_id": push.request_id, "generation": generation},
        )
        transaction.on_commit(lambda: enqueue_push(push_id=push.pk))
    return push


def approve_and_push(*, invoice: Invoice, user) -> InvoicePush:
    """Approve and send to QuickBooks, both or neither: a missing mapping keeps the draft."""
    with transaction.atomic():
        _check_ready(invoice=invoice, user=user)
        approved = approve_invoice(invoice=invoice, user=user)
        return request_push(invoice=approved, user=user)


def push_again(*, invoice: Invoice, user) -> InvoicePush:
    """The explicit action after the QuickBooks invoice was voided or deleted there: the old
    push is closed and a new generation creates a new QuickBooks invoice."""
    with transaction.atomic():
        Invoice.objects.select_for_update().get(pk=invoice.pk)
        done = invoice.pushes.select_for_update().filter(status__in=IN_QUICKBOOKS).first()
        if done is None or done.qbo_status not in FINAL_REMOTE_STATUSES:
            raise PushRefused(
                f"{invoice.number} can be sent again only after its QuickBooks invoice was "
                "voided or deleted there (as last read back)"
            )
        # The model has no "superseded" status; failed is the one that frees the invoice for a
        # new generation, and the note says what happened.
        done.status = InvoicePush.Status.FAILED
        done.last_error = (
            f"{done.qbo_status.capitalize()} in QuickBooks; replaced by a new push on request"
        )
        done.save(update_fields=["status", "last_error"])
        return request_push(invoice=invoice, user=user)


def enqueue_push(*, push_id: int) -> None:
    from django_q.tasks import async_task

    async_task(PUSH_TASK, push_id, group="quickbooks-push")


def resume_waiting_pushes() -> int:
    """Enqueue every queued or interrupted push again (after reconnecting). Safe to run any
    time: a push that is done stays done."""
    ids = list(
        InvoicePush.objects.filter(
            status__in=[InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING]
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for push_id in ids:
        enqueue_push(push_id=push_id)
    return len(ids)


def resume_stalled_pushes(*, older_than: timedelta = timedelta(minutes=15)) -> int:
    """Re-enqueue pushes left queued or pushing (a killed worker, a lost task, a lock wait that
    timed out) for longer than `older_than`, while QuickBooks is connected."""
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    if conn is None or conn.status != QuickBooksConnection.Status.CONNECTED:
        return 0
    ids = list(
        InvoicePush.objects.filter(
            status__in=[InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING],
            created_at__lt=timezone.now() - older_than,
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for push_id in ids:
        enqueue_push(push_id=push_id)
    return len(ids)


# --- Pushing ----------------------------------------------------------------------------------


@contextmanager
def _realm_lock(realm_id: str) -> Iterator[None]:
    """One push at a time per QuickBooks company, across every worker process. A session-level
    advisory lock: released on unlock, or by PostgreSQL when a killed worker's connection
    closes. Before handing over, wait until this process's pacing allows the next request."""
    wait_seconds = _setting("QBO_PUSH_LOCK_WAIT_SECONDS", 180)
    try:
        # Wait in PostgreSQL (no polling); lock_timeout bounds the wait, for this statement's
        # transaction only. The lock itself is session-level and outlives the transaction.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{int(wait_seconds * 1000)}ms"]
            )
            cursor.execute(
                "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))", [LOCK_NAMESPACE, realm_id]
            )
    except OperationalError as exc:
        raise PushBusy(
            f"another push to QuickBooks company {realm_id} held the lock for over "
            f"{wait_seconds:.0f} s"
        ) from exc
    try:
        yield
    finally:
        qbo.settle_pacing(realm_id)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", [LOCK_NAMESPACE, realm_id]
            )


def push(*, push_id: int) -> InvoicePush:
    """Send one push to QuickBooks. Safe to run any number of times (see module doc)."""
    conn = QuickBooksConnection.objects.filter(pk=1).first()
    try:
        _require_connected(conn)
    except (NotConnected, qbo.QuickBooksReconnectRequired) as exc:
        return _wait_for_connection(push_id, str(exc))
    with _realm_lock(conn.realm_id):
        return _push_locked(push_id)


def _push_locked(push_id: int) -> InvoicePush:
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().select_related("invoice").get(pk=push_id)
        if row.status not in (InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING):
            return row  # pushed, mismatch or failed: never sent again by a re-delivered task
        if row.invoice.status != InvoiceStatus.APPROVED:
            return _fail(
                row,
                f"{row.invoice.number} was "
                f"{row.invoice.get_status_display().lower()} before it reached "
                "QuickBooks; nothing was sent",
            )
        row.status = InvoicePush.Status.PUSHING
        row.save(update_fields=["status"])
    invoice = row.invoice
    try:
        payload = invoice_input(invoice=invoice, push=row)
    except PushRefused as exc:
        return _fail(row, str(exc))

    # A new generation, or an old row that may have reached QuickBooks longer ago than Intuit
    # is trusted to remember its request id, first asks QuickBooks by number.
    window = timedelta(hours=_setting("QBO_REQUESTID_TRUST_HOURS", 24))
    reconcile = row.generation > 1 or (
        row.attempts > 0 and row.created_at < timezone.now() - window
    )
    max_tries = int(_setting("QBO_PUSH_MAX_TRIES", 5))
    # Bounded so a run ends well inside the django-q2 timeout (600 s) even while throttled.
    deadline = time.monotonic() + _setting("QBO_PUSH_TIME_BUDGET_SECONDS", 300)
    last: qbo.QuickBooksError | None = None
    for attempt in range(1, max_tries + 1):
        try:
            realm_id, token = access_token()
            api = _api(realm_id, token)
            if reconcile:
                existing = _find_existing(api, invoice)
                if existing is not None:
                    return _record(row, existing, reconciled=True)
                reconcile = False
            InvoicePush.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
            row.attempts += 1
            try:
                created = api.create_invoice(payload, request_id=row.request_id)
            except qbo.QuickBooksAuthExpired:
                realm_id, token = access_token(rejected=token)
                created = _api(realm_id, token).create_invoice(payload, request_id=row.request_id)
            return _record(row, created)
        except (qbo.QuickBooksReconnectRequired, NotConnected) as exc:
            return _wait_for_connection(row.pk, str(exc))
        except (
            qbo.QuickBooksThrottled,
            qbo.QuickBooksTransientError,
            qbo.QuickBooksAuthExpired,
        ) as exc:
            last = exc
            delay = _backoff_seconds(attempt, exc)
            if attempt == max_tries or time.monotonic() + delay > deadline:
                break
            _sleep(delay)
        except (qbo.QuickBooksValidationError, qbo.QuickBooksConfigError) as exc:
            return _fail(row, exc.message)
    assert last is not None
    if row.attempts < int(_setting("QBO_PUSH_MAX_ATTEMPTS", 15)):
        # Not given up: the stalled-push sweep runs it again later, with the same request id.
        return _postpone(
            row.pk,
            f"{last.message}. Will try again in a few minutes (after {row.attempts} tries so far).",
        )
    return _fail(
        row,
        f"{last.message}. Gave up after {row.attempts} tries; retrying is safe: "
        "QuickBooks is asked for this invoice by number before anything is "
        "created again",
    )


def _backoff_seconds(attempt: int, error: qbo.QuickBooksError) -> float:
    # Seconds, not money: plain numbers from settings.
    base = _setting("QBO_RETRY_BASE_SECONDS", 2)
    cap = _setting("QBO_RETRY_MAX_SECONDS", 60)
    delay = min(cap, base * 2 ** (attempt - 1)) + random.uniform(0, base)
    if isinstance(error, qbo.QuickBooksThrottled):
        if error.retry_after_seconds is not None:
            return max(error.retry_after_seconds, delay)
        return max(_setting("QBO_THROTTLE_WAIT_SECONDS", 10), delay)
    return delay


def _postpone(push_id: int, message: str) -> InvoicePush:
    """Leave the push queued with a note; the same request id goes out when it runs again
    (reconnecting, or the stalled-push sweep, enqueues it)."""
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().get(pk=push_id)
        if row.status in (InvoicePush.Status.QUEUED, InvoicePush.Status.PUSHING):
            row.status = InvoicePush.Status.QUEUED
            row.last_error = message
            row.save(update_fields=["status", "last_error"])
    return row


def _wait_for_connection(push_id: int, reason: str) -> InvoicePush:
    return _postpone(push_id, f"Waiting for QuickBooks: {reason}")


def _fail(row: InvoicePush, message: str) -> InvoicePush:
    with transaction.atomic():
        row = InvoicePush.objects.select_for_update().get(pk=row.pk)
        row.status = InvoicePush.Status.FAILED
        row.last_error = message
        row.save(update_fields=["status", "last_error"])
        InvoiceEvent.objects.create(
            invoice_id=row.invoice_id,
            action="qbo_push_failed",
            detail={"request_id": row.request_id, "error": message},
        )
    logger.warning("QuickBooks push %s failed: %s", row.request_id, message)
    return row


def _marker(invoice: Invoice) -> str:
    return f"billables-{invoice.pk}-g"


def _find_existing(api: qbo.QuickBooksApi, invoice: Invoice) -> qbo.RemoteInvoice | None:
    """An earlier generation's QuickBooks invoice: our number, our marker, not voided."""
    for remote in api.find_invoices_by_number(invoice.number):
        if _marker(invoice) in remote.private_note and remote.status != "voided":
            return remote
    return None


def _record(
    row: InvoicePush, remote: qbo.RemoteInvoice, *, reconciled: bool = False
) -> InvoicePush:
    """Store what QuickBooks created; a total that differs from ours to the cent is a
    mismatch and flags the invoice."""
    now = timezone.now()
    with transaction.atomic():
        # Invoice before push, the order request_push and push_again lock them in.
        invoice = Invoice.objects.select_for_update().get(pk=row.invoice_id)
        row = InvoicePush.objects.select_for_update().get(pk=row.pk)
        row.qbo_invoice_id = remote.id
        row.sync_token = remote.sync_token
        row.doc_number = remote.doc_number
        row.qbo_total = remote.total_amount
        row.qbo_status = remote.status
        row.status_checked_at = row.pushed_at = now
        detail = {
            "request_id": row.request_id,
            "qbo_invoice_id": remote.id,
            "doc_number": remote.doc_number,
            "qbo_total": str(remote.total_amount),
            "total": str(invoice.total),
            "reconciled": reconciled,
        }
        if remote.total_amount != invoice.total:
            difference = remote.total_amount - invoice.total
            row.status = InvoicePush.Status.MISMATCH
            row.last_error = (
                f"QuickBooks' total is {remote.total_amount} {invoice.currency}, ours is "
                f"{invoice.total} ({difference:+} {invoice.currency}): check tax and line "
                f"settings of QuickBooks invoice {remote.doc_number} before sending it"
            )
            if Flag.QBO_MISMATCH not in invoice.flags:
                invoice.flags = [*invoice.flags, Flag.QBO_MISMATCH]
                invoice.save(update_fields=["flags"])
            action = "qbo_mismatch"
        else:
            row.status = InvoicePush.Status.PUSHED
            row.last_error = ""
            action = "qbo_pushed"
        row.save()
        InvoiceEvent.objects.create(invoice=invoice, action=action, detail=detail)
    return row


def _line_description(line) -> str:
    return f"[{line.billing_code}] {line.description}" if line.billing_code else line.description


def invoice_input(*, invoice: Invoice, push: InvoicePush) -> qbo.InvoiceInput:
    """Our invoice as QuickBooks should hold it: one line per line, adjustments included."""
    missing = missing_mappings(invoice=invoice)
    if missing:
        raise PushRefused(missing.message(invoice.number))
    customer = CustomerMapping.objects.get(client_id=invoice.client_id)
    lines = list(invoice.lines.order_by("position"))
    items = dict(
        ItemMapping.objects.filter(
            category_id__in={ln.category_id for ln in lines if ln.category_id}
        ).values_list("category_id", "qbo_item_id")
    )
    default_item = load_connection().default_item_id
    link = _setting("BILLABLES_BASE_URL", "").rstrip("/") + reverse(
        "admin:invoices_invoice_change", args=[invoice.pk]
    )
    return qbo.InvoiceInput(
        customer_id=customer.qbo_customer_id,
        doc_number=invoice.number,
        txn_date=invoice.issue_date,
        due_date=invoice.due_date,
        currency=invoice.currency,
        private_note=f"billables {invoice.number} (request {push.request_id}): {link}",
        lines=tuple(
            qbo.InvoiceLineInput(
                item_id=items[line.category_id] if line.category_id else default_item,
                description=_line_description(line),
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                service_date=line.first_date,
            )
            for line in lines
        ),
    )


# --- Status read-back -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusSummary:
    checked: int
    changed: int

    def __str__(self) -> str:
        return f"{self.checked} QuickBooks invoice(s) checked, {self.changed} changed"


def refresh_statuses() -> StatusSummary:
    """Read the pushed invoices' state in QuickBooks (draft, sent, partial, paid, voided,
    deleted). Voided and deleted are final and not read again."""
    rows = list(
        InvoicePush.objects.filter(status__in=IN_QUICKBOOKS)
        .exclude(qbo_invoice_id="")
        .exclude(qbo_status__in=FINAL_REMOTE_STATUSES)
    )
    if not rows:
        return StatusSummary(0, 0)
    ids = [row.qbo_invoice_id for row in rows]
    remote = {r.id: r for r in with_api(lambda api: api.read_invoices(ids))}
    now = timezone.now()
    changed = 0
    for row in rows:
        found = remote.get(row.qbo_invoice_id)
        status = found.status if found else "deleted"
        if status != row.qbo_status:
            changed += 1
            InvoiceEvent.objects.create(
                invoice_id=row.invoice_id,
                action="qbo_status",
                detail={
                    "qbo_invoice_id": row.qbo_invoice_id,
                    "status": {"before": row.qbo_status, "after": status},
                },
            )
        row.qbo_status = status
        row.status_checked_at = now
        if found is not None:
            row.sync_token = found.sync_token
    InvoicePush.objects.bulk_update(rows, ["qbo_status", "status_checked_at", "sync_token"])
    return StatusSummary(len(rows), changed)
