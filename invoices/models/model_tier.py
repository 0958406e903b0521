"""Language-model tier: usage and cost, per run and per request."""

from django.db import models

from timesheets.models import Client


class TokenUsage(models.Model):
    """Tokens and their cost (USD, from the price table of the model tier)."""

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)

    class Meta:
        abstract = True


class ModelRun(TokenUsage):
    """One pass of the language-model tier over undecided entries."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    trigger = models.CharField(max_length=30, help_text="import, command, batch-api, ...")
    model = models.CharField(max_length=60)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    entries = models.PositiveIntegerField(default=0)
    decided = models.PositiveIntegerField(default=0)
    abstained = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    batch_id = models.CharField(max_length=100, blank=True, help_text="Message Batches API id.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.model} run {self.pk} ({self.status})"


class ModelRequest(TokenUsage):
    """One request to the model: a batch of one client's entries."""

    class Status(models.TextChoices):
        OK = "ok", "Answered"
        PARTIAL = "partial", "Answered, some items rejected"
        INVALID = "invalid", "Answer rejected"
        FAILED = "failed", "Model unavailable"

    run = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="model_requests")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices)
    entries = models.PositiveIntegerField(default=0)
    distinct_notes = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"request {self.pk} of run {self.run_id} ({self.status})"
