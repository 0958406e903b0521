"""QuickBooks Online: the connection, customer and item mappings, and invoice pushes."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoices.models.amounts import MONEY
from invoices.models.invoice import Invoice
from invoices.models.policy import Category
from timesheets.models import Client


class QuickBooksConnection(models.Model):
    """The firm's QuickBooks company (one row). Tokens are encrypted (integrations.encryption)."""

    class Status(models.TextChoices):
        DISCONNECTED = "disconnected", "Not connected"
        CONNECTED = "connected", "Connected"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnecting"

    environment = models.CharField(max_length=20, default="sandbox")
    realm_id = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DISCONNECTED)
    access_token_encrypted = models.TextField(blank=True, editable=False)
    refresh_token_encrypted = models.TextField(blank=True, editable=False)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token_expires_at = models.DateTimeField(null=True, blank=True)
    oauth_state = models.CharField(max_length=100, blank=True, editable=False)
    default_item_id = models.CharField(max_length=50, blank=True)
    default_item_name = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # `manage.py check_connections`: the last check's outcome ("ok: ..." or "failed: <why>")
    # and when it ran, shown on the connection's admin page (as a tracker connection keeps its).
    last_check_result = models.TextField(blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="qbo_connection_singleton")]

    def __str__(self) -> str:
        return f"QuickBooks {self.environment} {self.realm_id or '(not connected)'}"


class CustomerMapping(models.Model):
    client = models.OneToOneField(Client, on_delete=models.CASCADE, related_name="qbo_customer")
    qbo_customer_id = models.CharField(max_length=50)
    qbo_display_name = models.CharField(max_length=500)

    def __str__(self) -> str:
        return f"{self.client} -> {self.qbo_display_name}"


class ItemMapping(models.Model):
    category = models.OneToOneField(Category, on_delete=models.CASCADE, related_name="qbo_item")
    qbo_item_id = models.CharField(max_length=50)
    qbo_item_name = models.CharField(max_length=200)

    def __str__(self) -> str:
        return f"{self.category} -> {self.qbo_item_name}"


class InvoicePush(models.Model):
    """One attempt generation to create an invoice in QuickBooks.

    The request id is derived from (invoice, generation) and stored before the call goes out,
    so a retry after a lost response reuses it and QuickBooks returns the original invoice.
    A new generation is made only by an explicit action (e.g. pushing again after a void).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PUSHING = "pushing", "Pushing"
        PUSHED = "pushed", "Pushed"
        FAILED = "failed", "Failed (retry possible)"
        MISMATCH = "mismatch", "Pushed, totals differ"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="pushes")
    generation = models.PositiveSmallIntegerField(default=1)
    request_id = models.CharField(max_length=50, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    qbo_invoice_id = models.CharField(max_length=50, blank=True)
    sync_token = models.CharField(max_length=20, blank=True)
    doc_number = models.CharField(max_length=30, blank=True)
    qbo_total = models.DecimalField(**MONEY, null=True, blank=True)
    qbo_status = models.CharField(max_length=20, blank=True, help_text="draft, sent, paid, voided")
    status_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    pushed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint("invoice", "generation", name="push_generation_unique"),
            # One push in flight or done per invoice: a second can only follow a failure.
            models.UniqueConstraint(
                "invoice",
                condition=Q(status__in=["queued", "pushing", "pushed", "mismatch"]),
                name="one_active_push_per_invoice",
            ),
        ]

    def __str__(self) -> str:
        return f"push {self.request_id} ({self.status})"
