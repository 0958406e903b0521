"""What a client is billed by: categories, the client's policy (section 3), its billing codes,
rate multipliers and not-to-exceed caps."""

from django.db import models
from django.db.models import Q

from invoices.core.policy import GroupBy, RoundingLocus, RoundingMode
from invoices.models.amounts import MONEY
from invoices.models.utbms import validate_activity_code, validate_task_code
from timesheets.models import Client, Project


class Category(models.Model):
    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    billable = models.BooleanField(default=True, help_text="Billable by default.")
    billing_code = models.CharField(max_length=20, blank=True, help_text="Default billing code.")
    # LEDES (docs/ledes.md): the UTBMS task and activity codes of this category's time, for
    # clients that require UTBMS; a client's billing code for the category, when it is a UTBMS
    # task code, takes the task code's place.
    utbms_task_code = models.CharField(
        max_length=10,
        blank=True,
        validators=[validate_task_code],
        help_text="Default UTBMS task code, e.g. L120.",
    )
    utbms_activity_code = models.CharField(
        max_length=10,
        blank=True,
        validators=[validate_activity_code],
        help_text="Default UTBMS activity code, e.g. A104.",
    )

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
    # LEDES (docs/ledes.md).
    requires_utbms = models.BooleanField(
        default=False,
        help_text="Every billed line needs a UTBMS task and activity code (expenses: an "
        "expense code); the pre-send checks and the LEDES export hold the invoice otherwise.",
    )
    ledes_client_id = models.CharField(
        max_length=20,
        blank=True,
        help_text="The CLIENT_ID of LEDES files (the firm's code for the client); empty: the "
        "client's id.",
    )
    # Billing semantics 12.2: the client's default tax code (none: not taxed).
    tax_code = models.ForeignKey(
        "invoices.TaxCode",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Default tax code of the client's lines; empty: no tax.",
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
