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
        # Billed by its fixed fee's milestones (invoices.FixedFee), not by the hour.
        FIXED_FEE = "fixed_fee", "Fixed fee"

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


class LiveEntries(models.Manager["TimeEntry"]):
    """Entries still present at their source: everything billing reads. An entry deleted at
    the source is kept (marked `deleted_at`, see timesheets.sync) for its history and in case
    it comes back, but no draft, classification or report sees it."""

    def get_queryset(self) -> models.QuerySet["TimeEntry"]:
        return super().get_queryset().filter(deleted_at__isnull=True)


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
    # The tracker's own billing state (billing semantics 10.2): already invoiced there (Harvest
    # `Invoiced?` / `is_billed`, or locked by an invoice; Clockify's invoiced flag), and
    # approved there (None: the tracker does not say). Billing holds such entries.
    tracker_invoiced = models.BooleanField(default=False)
    tracker_approved = models.BooleanField(null=True, blank=True)
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
    # Set for entries that arrive through an API sync (None for CSV imports).
    connection = models.ForeignKey(
        "TrackerConnection",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="entries",
    )
    # The tracker's own last-modified time of the entry, as last synced.
    source_updated_at = models.DateTimeField(null=True, blank=True)
    # When a sync noticed that the entry is gone at the source (never set for an entry on an
    # approved invoice: that one stays billed and its invoice is flagged instead).
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Every entry, deleted ones too (the sync's upsert and the admin use it).
    all_objects = models.Manager()
    # The default manager: entries deleted at the source are invisible unless asked for.
    objects = LiveEntries()

    class Meta:
        default_manager_name = "objects"
        base_manager_name = "all_objects"
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
            models.Index(fields=["connection", "date"]),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.person} {self.duration_seconds // 60}m {self.notes[:40]}"

    @property
    def key(self) -> str:
        return f"{self.source}:{self.external_id}"


# --- API sync from the trackers (timesheets.sync) ----------------------------------------------


class TrackerConnection(models.Model):
    """One tracker account or workspace that the hourly sync reads, with its encrypted token."""

    class Kind(models.TextChoices):
        HARVEST = "harvest", "Harvest v2"
        CLOCKIFY = "clockify", "Clockify"
        TOGGL = "toggl", "Toggl Track v9 / Reports v3"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        FAILING = "failing", "Failing (tried again every run)"
        STOPPED = "stopped", "Stopped (needs someone to fix it)"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    account_id = models.CharField(
        max_length=100,
        help_text="Harvest account id, Clockify workspace id or Toggl Track workspace id.",
    )
    # Fernet ciphertext (integrations.encryption); the token itself is never stored, shown or
    # logged.
    token_encrypted = models.TextField(blank=True, editable=False)
    token_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per-tracker options, see docs/sync.md (api, page_size, timezone, ...).",
    )
    base_url = models.URLField(blank=True, help_text="Blank: the tracker's public API.")
    reports_url = models.URLField(
        blank=True, help_text="Clockify and Toggl reports API. Blank: the public one."
    )
    is_enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # A rate limit or quota answer said to come back later: runs before then are not started.
    retry_after = models.DateTimeField(null=True, blank=True)
    # Incremental sync: the tracker's last-modified time of the newest entry seen (Harvest,
    # Toggl /me), or the start of the last successful run (report APIs). None: not synced yet.
    cursor = models.DateTimeField(null=True, blank=True)
    overlap_minutes = models.PositiveIntegerField(
        default=30, help_text="Each run re-reads this much before the cursor."
    )
    window_days = models.PositiveIntegerField(
        default=45,
        help_text="Rolling window re-read in full to notice entries deleted at the source.",
    )
    window_every_hours = models.PositiveIntegerField(
        default=1, help_text="How often the rolling window is re-read (1: every hourly run)."
    )
    window_checked_at = models.DateTimeField(null=True, blank=True)
    sync_from = models.DateField(
        null=True,
        blank=True,
        help_text="Entries dated before this day are never read. Blank: the first run reads "
        "the rolling window.",
    )
    # The first run (backfill) reads day ranges in order; it resumes from here after a stop.
    backfill_position = models.DateField(null=True, blank=True, editable=False)
    # `manage.py check_connections`: the last check's outcome ("ok: ..." or "failed: <why>")
    # and when it ran, shown in the admin.
    last_check_result = models.TextField(blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="tracker_connection_name_unique_ci"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class SyncRun(models.Model):
    """One run of one connection's sync, and what it did (written page by page)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        RATE_LIMITED = "rate_limited", "Stopped by a rate limit (resumes later)"
        SKIPPED = "skipped", "Skipped (another sync of this connection was running)"
        ABANDONED = "abandoned", "Abandoned (its worker stopped mid-run)"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Admin (sync now)"
        COMMAND = "command", "manage.py sync"
        MAPPING = "mapping", "New mapping"

    connection = models.ForeignKey(TrackerConnection, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.SCHEDULE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    frozen = models.PositiveIntegerField(
        default=0, help_text="Changed or deleted at the source while on an approved invoice."
    )
    held = models.PositiveIntegerField(default=0, help_text="Waiting for a person/project mapping.")
    running_skipped = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_messages = models.JSONField(default=list, blank=True)
    progress = models.CharField(max_length=300, blank=True)
    cursor_before = models.DateTimeField(null=True, blank=True)
    cursor_after = models.DateTimeField(null=True, blank=True)
    import_batch = models.OneToOneField(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_run"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["connection", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.connection.name} {self.started_at:%Y-%m-%d %H:%M} {self.status}"


class ExternalPerson(models.Model):
    """A tracker's user, and the firm's person whose time it is (None: waiting to be mapped)."""

    class MatchedBy(models.TextChoices):
        NONE = "", "Not mapped"
        EMAIL = "email", "Same email"
        ADMIN = "admin", "Mapped in the admin"

    connection = models.ForeignKey(
        TrackerConnection, on_delete=models.CASCADE, related_name="external_people"
    )
    external_id = models.CharField(max_length=100)
    name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=254, blank=True)
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.SET_NULL, related_name="tracker_users"
    )
    matched_by = models.CharField(max_length=10, choices=MatchedBy.choices, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connection__name", "name"]
        verbose_name = "tracker person"
        verbose_name_plural = "tracker people"
        constraints = [
            models.UniqueConstraint(
                "connection", "external_id", name="external_person_unique_per_connection"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.external_id} ({self.connection.name})"


class ExternalProject(models.Model):
    """A tracker's project, and the firm's project it is (None: waiting to be mapped).
    `external_id` "" stands for the tracker's entries without a project."""

    class MatchedBy(models.TextChoices):
        NONE = "", "Not mapped"
        CODE = "code", "Same project code"
        NAME = "name", "Same client and project name"
        ADMIN = "admin", "Mapped in the admin"

    connection = models.ForeignKey(
        TrackerConnection, on_delete=models.CASCADE, related_name="external_projects"
    )
    external_id = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=200, blank=True)
    code = models.CharField(max_length=50, blank=True)
    client_name = models.CharField(max_length=200, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="tracker_projects"
    )
    matched_by = models.CharField(max_length=10, choices=MatchedBy.choices, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connection__name", "client_name", "name"]
        verbose_name = "tracker project"
        constraints = [
            models.UniqueConstraint(
                "connection", "external_id", name="external_project_unique_per_connection"
            ),
        ]

    def __str__(self) -> str:
        label = " / ".join(part for part in (self.client_name, self.name) if part)
        return f"{label or self.external_id or '(no project)'} ({self.connection.name})"


class HeldEntry(models.Model):
    """An entry read from a tracker whose person or project is not mapped yet. It waits here,
    as the tracker last reported it, and is stored by the first sync after both are mapped."""

    connection = models.ForeignKey(
        TrackerConnection, on_delete=models.CASCADE, related_name="held_entries"
    )
    external_id = models.CharField(max_length=100)
    external_person = models.ForeignKey(
        ExternalPerson, on_delete=models.CASCADE, related_name="held_entries"
    )
    external_project = models.ForeignKey(
        ExternalProject, on_delete=models.CASCADE, related_name="held_entries"
    )
    date = models.DateField()
    data = models.JSONField()
    fetched_at = models.DateTimeField()

    class Meta:
        ordering = ["date", "id"]
        verbose_name = "entry waiting for a mapping"
        verbose_name_plural = "entries waiting for a mapping"
        constraints = [
            models.UniqueConstraint(
                "connection", "external_id", name="held_entry_unique_per_connection"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.external_id} ({self.connection.name})"


# --- uploads imported in the background (timesheets.importing.jobs) ---------------------------


class ImportJob(models.Model):
    """An upload too large to import inside the web request (setting IMPORT_BACKGROUND_BYTES):
    its file is kept in the database (`ImportJobChunk`, so a worker on any machine can read it)
    until a django-q2 task has imported it, and the job shows how far it got."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    filename = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    # The upload form's choices ("": the file or the setting decides).
    date_order = models.CharField(max_length=3, blank=True)
    internal_time = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    rows_read = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True)
    # A refused file's problems: [{"row", "column", "reason", "hint"}], as the upload page lists.
    errors = models.JSONField(default=list, blank=True)
    batch = models.OneToOneField(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="job"
    )
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class ImportJobChunk(models.Model):
    """One block of an ImportJob's file, in order; deleted when the job finishes."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint("job", "position", name="import_job_chunk_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.job} block {self.position}"
