"""Facts about time: who worked, for which client and project, when, for how long.

Nothing here knows about money. Billing configuration and invoices live in `invoices`, which
depends on this app and never the other way round.
"""

from django.db import models
from django.db.models.functions import Lower

MAX_ENTRY_SECONDS = 24 * 60 * 60


class Client(models.Model):
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="client_name_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    class Billing(models.TextChoices):
        HOURLY = "hourly", "Hourly"
        NON_BILLABLE = "non_billable", "Non-billable"

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="projects")
    code = models.CharField(max_length=50, blank=True, help_text="Unique across the firm when set.")
    name = models.CharField(max_length=200)
    billing = models.CharField(max_length=20, choices=Billing.choices, default=Billing.HOURLY)

    class Meta:
        ordering = ["client__name", "name"]
        constraints = [
            models.UniqueConstraint(
                Lower("code"), condition=~models.Q(code=""), name="project_code_unique_ci"
            ),
            models.UniqueConstraint("client", Lower("name"), name="project_name_unique_per_client"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}".strip() if self.code else self.name

    @property
    def is_billable(self) -> bool:
        return self.billing != self.Billing.NON_BILLABLE


class Person(models.Model):
    email = models.EmailField()
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=100, blank=True, help_text="Rates can be set per role.")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "people"
        constraints = [
            models.UniqueConstraint(Lower("email"), name="person_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class ImportBatch(models.Model):
    """One accepted file (or, later, one API sync run) and what it did."""

    source = models.CharField(max_length=20)
    filename = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    frozen_changes = models.PositiveIntegerField(
        default=0, help_text="Changed rows whose entry is on an approved invoice (not applied)."
    )
    imported_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-imported_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.filename} ({self.source}, {self.imported_at:%Y-%m-%d %H:%M})"


class TimeEntry(models.Model):
    class Source(models.TextChoices):
        HARVEST = "harvest", "Harvest"
        CLOCKIFY = "clockify", "Clockify"
        TOGGL = "toggl", "Toggl Track"
        CSV = "csv", "Other CSV"

    source = models.CharField(max_length=20, choices=Source.choices)
    # The tracker's id, or for CSV exports (which carry none) the stable key described in
    # timesheets.importing.keys. Unique per source: re-importing upserts, never duplicates.
    external_id = models.CharField(max_length=100)
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="entries")
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="entries")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="entries")
    task = models.CharField(max_length=200, blank=True)
    date = models.DateField()
    start_time = models.TimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField()
    notes = models.TextField(blank=True)
    # Lower-case, punctuation and extra whitespace removed: the key of classification memory.
    normalized_notes = models.TextField(blank=True)
    tracker_billable = models.BooleanField(default=True)
    # Hash of the fields above as the source last reported them: an import that brings a
    # different hash for the same key is an edit at the source.
    content_hash = models.CharField(max_length=64)
    # Set while the entry is on an approved invoice (by invoices.approval, cleared on void):
    # imports then keep the entry as billed and record the source's change beside it.
    locked = models.BooleanField(default=False)
    # A change reported at the source for an entry that is frozen on an approved invoice is
    # kept here, not applied (billing semantics section 8).
    pending_source_change = models.JSONField(null=True, blank=True)
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="entries"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["date", "person__name", "id"]
        verbose_name_plural = "time entries"
        constraints = [
            models.UniqueConstraint("source", "external_id", name="entry_source_key_unique"),
            models.CheckConstraint(
                condition=models.Q(duration_seconds__lte=MAX_ENTRY_SECONDS),
                name="entry_duration_at_most_24h",
            ),
        ]
        indexes = [
            models.Index(fields=["client", "date"]),
            models.Index(fields=["client", "normalized_notes"]),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.person} {self.duration_seconds // 60}m {self.notes[:40]}"

    @property
    def key(self) -> str:
        return f"{self.source}:{self.external_id}"
