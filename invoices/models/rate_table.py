"""The rate table (billing semantics section 5): one row per rate, its level from the fields set."""

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Coalesce

from invoices.core.rates import RateLevel, level_of
from invoices.models.amounts import RATE
from timesheets.models import Client, Person, Project


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
