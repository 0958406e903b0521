"""Invoice numbering (billing semantics 10.3): the gapless per-year sequence approval draws from."""

from django.db import models


class InvoiceNumberSequence(models.Model):
    """The last invoice number handed out per year (billing semantics 10.3). Approval takes
    this row's lock, so numbers are gapless: a rolled-back approval returns its number."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"
