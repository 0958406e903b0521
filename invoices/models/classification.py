"""Classification (billing semantics section 2): the rules tier and each entry's decision."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoices.models.policy import Category
from timesheets.models import Client, Project, TimeEntry


class ClassificationRule(models.Model):
    """Rules tier (section 2.2). All matchers that are set must match; at least one is set."""

    client = models.ForeignKey(
        Client,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="classification_rules",
        help_text="Empty: a firm-wide rule. Client rules are tried before firm-wide ones.",
    )
    priority = models.IntegerField(default=100)
    task = models.CharField(max_length=200, blank=True, help_text="Exact, case-insensitive.")
    notes_regex = models.CharField(max_length=500, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="rules")

    class Meta:
        ordering = ["client__name", "priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(task="") | ~Q(notes_regex="") | Q(project__isnull=False),
                name="rule_has_a_matcher",
            ),
        ]

    def __str__(self) -> str:
        return f"rule #{self.pk} -> {self.category.key}"


class Classification(models.Model):
    """What an entry is (category, wording, billable) and which tier decided it (section 2)."""

    class Tier(models.TextChoices):
        MANUAL = "manual", "Manual"
        RULE = "rule", "Rule"
        MEMORY = "memory", "Memory"
        LLM = "llm", "Language model"
        NONE = "", "Undecided"

    entry = models.OneToOneField(
        TimeEntry, on_delete=models.CASCADE, primary_key=True, related_name="classification"
    )
    # The decision, recomputed by every classification run from the tiers below.
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    description = models.TextField(blank=True, help_text="Client-facing wording.")
    tier = models.CharField(max_length=10, choices=Tier.choices, blank=True)
    rule = models.ForeignKey(
        ClassificationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    billable = models.BooleanField(default=False)
    billing_code = models.CharField(max_length=20, blank=True)
    needs_review = models.BooleanField(default=True)
    review_reason = models.CharField(max_length=300, blank=True)
    # Tier 1: a reviewer's decision. Never touched by a classification run.
    manual_category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    manual_billable = models.BooleanField(null=True, blank=True)
    manual_description = models.TextField(blank=True)
    manual_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    manual_at = models.DateTimeField(null=True, blank=True)
    # Tier 4: the language model's last validated answer (written by the model tier only).
    model_category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_description = models.TextField(blank=True)
    model_confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    model_note = models.CharField(max_length=300, blank=True, help_text="Why the model abstained.")
    model_request = models.ForeignKey(
        "ModelRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Similar memory (section 2.3): the decided note this entry's note matched.
    memory_note = models.TextField(blank=True)
    # A reviewer released an entry the tracker calls invoiced or unapproved (section 10.2).
    hold_released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hold_released_at = models.DateTimeField(null=True, blank=True)
    classified_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="classification_confidence_0_to_1",
            ),
            models.CheckConstraint(
                condition=Q(needs_review=True) | ~Q(tier="") | Q(billable=False),
                name="classification_billable_needs_a_tier",
            ),
        ]
        indexes = [models.Index(fields=["needs_review"])]

    def __str__(self) -> str:
        return f"{self.entry_id}: {self.category or 'undecided'}"

    @property
    def source_label(self) -> str:
        if self.tier == self.Tier.RULE and self.rule_id:
            return f"rule #{self.rule_id}"
        return self.get_tier_display()
