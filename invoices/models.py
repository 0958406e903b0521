"""Billing configuration, classification decisions and invoices.

Amounts are DecimalFields with a fixed scale and are always computed (and rounded) in Python by
`invoices.core.rounding` before they are stored; the database never rounds money.
"""

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Coalesce

from invoices.core.policy import GroupBy, RoundingLocus, RoundingMode
from invoices.core.rates import RateLevel, level_of
from timesheets.models import Client, Person, Project, TimeEntry

MONEY = {"max_digits": 14, "decimal_places": 2}
RATE = {"max_digits": 12, "decimal_places": 2}


class Firm(models.Model):
    """The firm's own settings: exactly one row (id = 1)."""

    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="USD")
    default_rate = models.DecimalField(
        **RATE, null=True, blank=True, help_text="Level 9 of the rate table; empty means none."
    )
    # Review desk (segregation of duties, reliability notes 3.2).
    approver_must_differ_from_corrector = models.BooleanField(
        default=False,
        help_text="Refuse approval by the person who last corrected an entry of the invoice.",
    )
    approvers_need_two_factor = models.BooleanField(
        default=False,
        help_text="Approve, void and send only from a login confirmed with a two-factor code.",
    )
    # Billing semantics 10.3: numbers are assigned at approval from a gapless per-year sequence.
    # What a client's invoice shows of the firm (printable invoice and PDF).
    address = models.TextField(blank=True, help_text="Postal address, as printed on invoices.")
    tax_id = models.CharField(max_length=50, blank=True, help_text="VAT / tax number.")
    logo_url = models.URLField(blank=True, help_text="An image shown at the top of invoices.")
    payment_instructions = models.TextField(
        blank=True, help_text="Printed under the total: bank details, how to pay."
    )
    invoice_number_template = models.CharField(
        max_length=60,
        default="INV-{year}-{seq:04}",
        help_text="How approved invoices are numbered: {year} and {seq} (the year's sequence, "
        "restarting each year), e.g. INV-{year}-{seq:04} gives INV-2026-0001.",
    )

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="firm_singleton")]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def load(cls) -> "Firm":
        firm, _ = cls.objects.get_or_create(id=1, defaults={"name": "My firm"})
        return firm


class InvoiceNumberSequence(models.Model):
    """The last invoice number handed out per year (billing semantics 10.3). Approval takes
    this row's lock, so numbers are gapless: a rolled-back approval returns its number."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class Category(models.Model):
    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    billable = models.BooleanField(default=True, help_text="Billable by default.")
    billing_code = models.CharField(max_length=20, blank=True, help_text="Default billing code.")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class ClientPolicy(models.Model):
    """A client's billing rules (billing semantics section 3). Every field has the spec default."""

    client = models.OneToOneField(
        Client, on_delete=models.CASCADE, primary_key=True, related_name="policy"
    )
    currency = models.CharField(max_length=3, blank=True, help_text="Empty: the firm currency.")
    rounding_increment_minutes = models.PositiveSmallIntegerField(default=0)
    rounding_mode = models.CharField(
        max_length=10, choices=RoundingMode.choices(), default=RoundingMode.UP
    )
    rounding_locus = models.CharField(
        max_length=10, choices=RoundingLocus.choices(), default=RoundingLocus.ENTRY
    )
    minimum_minutes = models.PositiveSmallIntegerField(default=0)
    non_billable_categories = models.ManyToManyField(Category, blank=True, related_name="+")
    require_billing_codes = models.BooleanField(default=False)
    discount_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    group_lines_by = models.CharField(
        max_length=20, choices=GroupBy.choices(), default=GroupBy.ENTRY
    )
    show_non_billable = models.BooleanField(default=False)
    invoice_per_project = models.BooleanField(default=False)
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    # What the client's invoice is addressed to (printable invoice and PDF).
    billing_address = models.TextField(blank=True)
    billing_email = models.EmailField(blank=True)
    po_number = models.CharField(max_length=50, blank=True, help_text="Purchase order number.")
    bill_approved_only = models.BooleanField(
        default=False,
        help_text="Hold entries the tracker reports as not approved (billing semantics 10.2).",
    )

    class Meta:
        verbose_name_plural = "client policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(discount_percent__gte=0, discount_percent__lte=100),
                name="policy_discount_0_to_100",
            ),
        ]

    def __str__(self) -> str:
        return f"Policy of {self.client}"


class BillingCode(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="billing_codes")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="+")
    code = models.CharField(max_length=20)

    class Meta:
        constraints = [
            models.UniqueConstraint("client", "category", name="billing_code_once_per_category")
        ]

    def __str__(self) -> str:
        return f"{self.category.key} -> {self.code}"


class RateMultiplier(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="rate_multipliers")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="+")
    factor = models.DecimalField(max_digits=6, decimal_places=4)

    class Meta:
        constraints = [
            models.UniqueConstraint("client", "category", name="multiplier_once_per_category"),
            models.CheckConstraint(condition=Q(factor__gte=0), name="multiplier_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.category.key} x {self.factor}"


class Cap(models.Model):
    """A not-to-exceed amount for one project's lines per invoice period."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="caps")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="caps")
    amount = models.DecimalField(**MONEY)

    class Meta:
        constraints = [
            models.UniqueConstraint("project", name="cap_once_per_project"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="cap_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.project} <= {self.amount}"


class Rate(models.Model):
    """One row of the rate table; its level (section 5) follows from which fields are set."""

    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.CASCADE, related_name="rates"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="rates"
    )
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.CASCADE, related_name="rates"
    )
    role = models.CharField(max_length=100, blank=True)
    rate = models.DecimalField(**RATE)
    valid_from = models.DateField(null=True, blank=True)
    valid_to = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["client__name", "project__code", "person__name", "role", "valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gte=0), name="rate_not_negative"),
            models.CheckConstraint(
                condition=~(Q(person__isnull=False) & ~Q(role="")), name="rate_person_or_role"
            ),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True)
                | Q(valid_to__isnull=True)
                | Q(valid_from__lte=F("valid_to")),
                name="rate_from_before_to",
            ),
            # Two rows for the same target (same level, same client/project/person/role) may
            # not overlap in time: section 5 forbids resolving that by guessing.
            ExclusionConstraint(
                name="rate_no_overlap_at_one_level",
                expressions=[
                    (Coalesce("client", 0), RangeOperators.EQUAL),
                    (Coalesce("project", 0), RangeOperators.EQUAL),
                    (Coalesce("person", 0), RangeOperators.EQUAL),
                    ("role", RangeOperators.EQUAL),
                    (
                        Func(
                            "valid_from",
                            "valid_to",
                            Value("[]"),
                            function="daterange",
                            output_field=DateRangeField(),
                        ),
                        RangeOperators.OVERLAPS,
                    ),
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_level_display()}: {self.rate}"

    @property
    def level(self) -> RateLevel:
        return level_of(
            project=self.project_id is not None,
            client=self.client_id is not None,
            person=self.person_id is not None,
            role=bool(self.role),
        )

    def get_level_display(self) -> str:
        return self.level.label


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


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved"
    VOID = "void", "Void"


class Flag(models.TextChoices):
    CAP_APPLIED = "cap_applied", "Not-to-exceed cap applied"
    ZERO_TOTAL = "zero_total", "Zero total with billable entries"
    PENDING = "pending", "Entries pending review"
    SOURCE_CHANGED = "source_changed", "Source changed after approval"
    STALE = "stale", "Entries changed since drafted: rebuild"
    QBO_MISMATCH = "qbo_mismatch", "QuickBooks total differs"
    LATE_TIME = "late_time", "Late time from an approved period"
    HELD = "held", "Entries held (invoiced or not approved in the tracker)"


class Invoice(models.Model):
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="invoices")
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoices",
        help_text="Set when the client is invoiced per project.",
    )
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(
        max_length=10, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    # Assigned at approval (billing semantics 10.3); a draft has none ("draft #id").
    number = models.CharField(max_length=40, null=True, blank=True, unique=True, editable=False)
    currency = models.CharField(max_length=3)
    issue_date = models.DateField()
    due_date = models.DateField()
    subtotal = models.DecimalField(**MONEY, default=0)
    adjustments = models.DecimalField(**MONEY, default=0)
    discount = models.DecimalField(**MONEY, default=0)
    total = models.DecimalField(**MONEY, default=0)
    flags = ArrayField(
        models.CharField(max_length=20, choices=Flag.choices), default=list, blank=True
    )
    # The policy that priced this draft, as it was: editing a rule never silently changes an
    # existing invoice, and a reviewer can see what applied.
    policy_snapshot = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    drafted_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-period_start", "client__name", "id"]
        permissions = [
            ("approve_invoice", "Can approve invoices"),
            ("void_invoice", "Can void invoices"),
        ]
        constraints = [
            # Drafting twice returns the same draft: one live invoice per client (and project,
            # when invoiced per project) and period.
            models.UniqueConstraint(
                "client",
                "project",
                "period_start",
                "period_end",
                condition=~Q(status="void"),
                nulls_distinct=False,
                name="one_live_invoice_per_client_period",
            ),
            models.CheckConstraint(
                condition=Q(period_start__lte=F("period_end")), name="invoice_period_ordered"
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="invoice_total_not_negative"),
            models.CheckConstraint(
                # A void keeps the number it had: none if it was voided as a draft.
                condition=Q(status="draft", number__isnull=True)
                | Q(status="approved", number__isnull=False)
                | Q(status="void"),
                name="invoice_numbered_once_approved",
            ),
            models.CheckConstraint(
                condition=Q(total=F("subtotal") + F("adjustments") + F("discount")),
                name="invoice_total_adds_up",
            ),
        ]
        indexes = [models.Index(fields=["period_start", "period_end", "status"])]

    def __str__(self) -> str:
        scope = f"{self.client} / {self.project}" if self.project_id else str(self.client)
        return f"{self.label} {scope} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"

    @property
    def label(self) -> str:
        """The invoice number, or "draft #id" before approval gives it one."""
        if self.number:
            return self.number
        return f"draft #{self.pk}" if self.pk else "new draft"

    @property
    def is_frozen(self) -> bool:
        return self.status != InvoiceStatus.DRAFT


class EntryAdjustment(models.Model):
    """A reviewer's write-down or write-up of one entry's billed hours (billing semantics
    10.4): it survives rebuilds and re-imports; a source change of the entry's hours after it
    flags the entry for review, the adjustment kept."""

    entry = models.OneToOneField(
        TimeEntry, on_delete=models.CASCADE, primary_key=True, related_name="adjustment"
    )
    billed_seconds = models.PositiveIntegerField(help_text="What the entry bills, after rounding.")
    # The entry's source seconds when the adjustment was made.
    source_seconds = models.PositiveIntegerField()
    reason = models.CharField(max_length=300)
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    made_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="adjustment_has_a_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id}: {self.billed_seconds} s ({self.reason[:40]})"


class ManualLine(models.Model):
    """A line a reviewer adds to a client's invoice of a period (section 10.4): a fixed fee, an
    expense or disbursement, a credit. Kept beside the draft, so every rebuild includes it."""

    class Kind(models.TextChoices):
        FIXED_FEE = "fixed_fee", "Fixed fee"
        EXPENSE = "expense", "Expense / disbursement"
        CREDIT = "credit", "Credit"

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="manual_lines")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    period_start = models.DateField()
    period_end = models.DateField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.TextField()
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=1)
    unit_price = models.DecimalField(**RATE)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    billing_code = models.CharField(max_length=20, blank=True)
    reason = models.CharField(max_length=300)
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    made_at = models.DateTimeField(auto_now=True)
    # The approved invoice it was billed on; then it is frozen with it.
    invoice = models.ForeignKey(
        "Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="manual_lines"
    )

    class Meta:
        ordering = ["period_start", "client__name", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="manual_line_has_a_reason"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="manual_line_quantity"),
            # A credit lowers the total; other kinds do not.
            models.CheckConstraint(
                condition=Q(kind="credit", unit_price__lte=0)
                | (~Q(kind="credit") & Q(unit_price__gte=0)),
                name="manual_line_sign_by_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.description[:40]}"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        TIME = "time", "Time"
        NO_CHARGE = "no_charge", "No charge"
        CAP = "cap", "Not-to-exceed adjustment"
        DISCOUNT = "discount", "Discount"
        FIXED_FEE = "fixed_fee", "Fixed fee"
        EXPENSE = "expense", "Expense / disbursement"
        CREDIT = "credit", "Credit"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.TextField()
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    billing_code = models.CharField(max_length=20, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    unit_price = models.DecimalField(**RATE, default=0)
    amount = models.DecimalField(**MONEY)
    first_date = models.DateField(null=True, blank=True)
    # Why this line is this amount, in plain data: rate row and level, multiplier, rounding,
    # classification sources, cap (section 6).
    derivation = models.JSONField(default=dict)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint("invoice", "position", name="line_position_unique"),
            models.CheckConstraint(
                condition=~Q(kind="no_charge") | Q(amount=0, unit_price=0),
                name="no_charge_line_is_free",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description[:60]} {self.amount}"


class InvoiceEntry(models.Model):
    """An entry's place on an invoice: on a line (billed or no charge) or pending review."""

    class State(models.TextChoices):
        BILLED = "billed", "Billed"
        NO_CHARGE = "no_charge", "No charge"
        PENDING = "pending", "Pending review"
        # Section 10.2: invoiced or not approved in the tracker; never blocks approval, and
        # leaves the invoice when it is approved (the entry is then unbilled, with its reason).
        HELD = "held", "Held"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="entry_links")
    line = models.ForeignKey(
        InvoiceLine, null=True, blank=True, on_delete=models.CASCADE, related_name="entry_links"
    )
    entry = models.ForeignKey(TimeEntry, on_delete=models.PROTECT, related_name="invoice_links")
    state = models.CharField(max_length=10, choices=State.choices)
    pending_reason = models.CharField(max_length=300, blank=True)
    # Mirrors "invoice is not void"; set false by the void service in the same transaction.
    is_live = models.BooleanField(default=True)
    raw_seconds = models.PositiveIntegerField()
    billed_seconds = models.PositiveIntegerField(default=0)
    # The entry's content hash when drafted: approval refuses a draft whose entries changed.
    content_hash = models.CharField(max_length=64, blank=True)
    # Section 10.1: set for late time, the first day of the approved period the entry is from.
    late_from = models.DateField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "invoice entries"
        constraints = [
            # Section 8: an entry is on at most one invoice that is not void. This index is the
            # guarantee; Python checks are only for friendlier messages.
            models.UniqueConstraint(
                "entry", condition=Q(is_live=True), name="entry_on_one_live_invoice"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "held"], line__isnull=True)
                | (~Q(state__in=["pending", "held"]) & Q(line__isnull=False)),
                name="entry_pending_xor_on_line",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} on {self.invoice_id} ({self.state})"


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


# --- Language-model tier (usage and cost, per run and per request) ------------------------


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


# --- QuickBooks Online --------------------------------------------------------------------


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
