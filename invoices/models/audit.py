"""The domain log of invoice state changes (the row-level trail is `invoices.history`)."""

from django.conf import settings
from django.db import models

from invoices.models.invoice import Invoice


class InvoiceEvent(models.Model):
    """Audit trail of invoice state changes: who, when, what, before and after."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=30)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action}"
