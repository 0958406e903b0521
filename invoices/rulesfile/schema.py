"""What each field of the rules file may hold: types, ranges, required or optional, defaults.

Each model checks only itself. References between parts of the file (a rule's category is
listed under `categories`, rates do not overlap, ...) need the whole file and are checked in
`invoices.rulesfile.loading`.

Models are strict: a value of the wrong YAML type is an error, not coerced (`"10"` is not a
priority, `yes` is not a name). Decimals are the exception: they may be written as numbers or
as strings, and the YAML loader hands numbers over as `Decimal`, never `float`.

Limits (lengths, digits, decimal places) are those of the database columns, so a file that
validates is also one the database accepts without rounding or truncating anything.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from invoices.core.classify import NotesPatternRefused, compile_notes_pattern

# The choices of `invoices.core.policy` (RoundingMode, RoundingLocus, GroupBy) and of
# Project.Billing, spelled out because strict pydantic accepts only enum instances for enum
# fields; tests check the two lists agree.
RoundingModeValue = Literal["up", "nearest", "down"]
RoundingLocusValue = Literal["entry", "line"]
GroupByValue = Literal["entry", "category", "category_person", "task"]
ProjectBillingValue = Literal["hourly", "non_billable", "fixed_fee"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_CURRENCY = re.compile(r"[A-Z]{3}")
_UTBMS_CODE = re.compile(r"[A-Z][0-9]{3}")


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool):  # YAML `yes`/`true` are bools, and bool is an int subclass
        raise PydanticCustomError("not_a_number", "not a number")
    if isinstance(value, float):
        # Only reachable from Python callers (the YAML loader never makes floats): a float
        # has already lost the decimal the author meant, so it is refused, not guessed.
        raise PydanticCustomError(
            "float_number", "not a number: write decimals as text, e.g. '0.5'"
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise PydanticCustomError("not_a_number", "not a number") from None
    else:
        raise PydanticCustomError("not_a_number", "not a number")
    if not result.is_finite():
        raise PydanticCustomError("not_a_number", "not a number")
    return result


def _to_date(value: object) -> dt.date:
    # datetime is a date subclass; a time of day on a rate boundary is a mistake, not a date.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("not_a_date", "not a date")


def _empty_list_if_none(value: object) -> object:
    # `rules:` with nothing under it is YAML null; the author means "none".
    return [] if value is None else value


def _empty_dict_if_none(value: object) -> object:
    return {} if value is None else value


def _compiles(pattern: str) -> str:
    # The engine classification matches with (RE2, linear time), not Python's `re`: a pattern
    # is valid exactly when the rules can run it.
    try:
        compile_notes_pattern(pattern)
    except NotesPatternRefused as refused:
        # The reason is passed as context: a pattern's own braces (`a{2000}`) are no template.
        raise PydanticCustomError("bad_regex", "{refused}", {"refused": str(refused)}) from None
    return pattern


def _is_email(value: str) -> str:
    try:
        validate_email(value)
    except DjangoValidationError:
        raise PydanticCustomError("not_an_email", "not an email address") from None
    return value


def _is_url(value: str) -> str:
    # The check the admin's URL field makes, so the file and the admin accept the same logos.
    try:
        URLValidator(schemes=["http", "https"])(value)
    except DjangoValidationError:
        raise PydanticCustomError("not_a_url", "not an http(s) URL") from None
    return value


def _is_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise PydanticCustomError(
            "not_a_slug", "must be a key of letters, digits, '-' and '_' only (no spaces)"
        )
    return value


def _is_utbms_shape(value: str) -> str:
    if not _UTBMS_CODE.fullmatch(value):
        raise PydanticCustomError(
            "not_a_utbms_code",
            "{code} is not a UTBMS code: a capital letter and three digits, e.g. L120",
            {"code": repr(value)},
        )
    return value


def _is_currency(value: str) -> str:
    if not _CURRENCY.fullmatch(value):
        raise PydanticCustomError(
            "not_a_currency", "must be an ISO 4217 code of 3 capital letters, e.g. USD"
        )
    return value


Date = Annotated[dt.date, BeforeValidator(_to_date)]
RateAmount = Annotated[
    Decimal, BeforeValidator(_to_decimal), Field(ge=0, max_digits=12, decimal_places=2)
]
MoneyAmount = Annotated[
    Decimal, BeforeValidator(_to_decimal), Field(ge=0, max_digits=14, decimal_places=2)
]
Factor = Annotated[
    Decimal, BeforeValidator(_to_decimal), Field(ge=0, max_digits=6, decimal_places=4)
]
Percent = Annotated[
    Decimal, BeforeValidator(_to_decimal), Field(ge=0, le=100, max_digits=5, decimal_places=2)
]
# Entries are at most 24 hours long, so a longer increment or minimum can only be a typo.
Minutes = Annotated[int, Field(ge=0, le=1440)]
Days = Annotated[int, Field(ge=0, le=32767)]
Priority = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
CategoryName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Role = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Task = Annotated[str, StringConstraints(min_length=1, max_length=200)]
BillingCodeText = Annotated[str, StringConstraints(min_length=1, max_length=20)]
# A UTBMS code's shape (a letter, three digits); whether the code set has it is a database
# check (invoices.rulesfile.checks), as the code set is a table.
UtbmsCodeText = Annotated[str, AfterValidator(_is_utbms_shape)]
LedesClientId = Annotated[str, StringConstraints(min_length=1, max_length=20)]
ProjectCode = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Regex = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_compiles)]
Email = Annotated[str, StringConstraints(min_length=1, max_length=254), AfterValidator(_is_email)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=50), AfterValidator(_is_slug)]
Currency = Annotated[str, AfterValidator(_is_currency)]
# What invoices print (issue 16). Addresses and instructions are text columns of any length.
PrintedText = Annotated[str, StringConstraints(min_length=1)]
TaxId = Annotated[str, StringConstraints(min_length=1, max_length=50)]
PoNumber = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_is_url)]
# A reference to something named elsewhere in the file; whether it exists is checked there.
Reference = Annotated[str, StringConstraints(min_length=1)]


# Billing semantics 12: a tax rate in percent, or "per QuickBooks" (its automated sales tax).
PER_QUICKBOOKS = "per QuickBooks"


def _tax_rate(value: object) -> Decimal | None:
    if isinstance(value, str) and value.strip().casefold() == PER_QUICKBOOKS.casefold():
        return None
    rate = _to_decimal(value)
    exponent = rate.as_tuple().exponent
    if not Decimal(0) <= rate <= Decimal(100) or (isinstance(exponent, int) and exponent < -4):
        raise PydanticCustomError(
            "bad_tax_rate",
            "must be a percent from 0 to 100 with at most 4 decimals, or 'per QuickBooks'",
        )
    return rate


TaxRateValue = Annotated[Decimal | None, BeforeValidator(_tax_rate)]
TaxCodeName = Annotated[str, StringConstraints(min_length=1, max_length=60)]
QuickBooksId = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FirmSpec(_Strict):
    name: Name
    currency: Currency = "USD"
    default_rate: RateAmount | None = None
    address: PrintedText | None = None
    tax_id: TaxId | None = None
    logo_url: Url | None = None
    payment_instructions: PrintedText | None = None
    tax_calculation: Literal["invoice", "line"] = "invoice"


class TaxCodeSpec(_Strict):
    """A tax code (billing semantics 12.1): its rate, or 'per QuickBooks'."""

    name: TaxCodeName
    rate: TaxRateValue
    compound: bool = False
    applies_after: Reference | None = None
    quickbooks_id: QuickBooksId | None = None


class CategorySpec(_Strict):
    key: Slug
    name: CategoryName
    billable: bool = True
    billing_code: BillingCodeText | None = None
    utbms_task_code: UtbmsCodeText | None = None
    utbms_activity_code: UtbmsCodeText | None = None


class RuleSpec(_Strict):
    """A classification rule: every matcher that is set must match, and one at least is set."""

    priority: Priority = 100
    task: Task | None = None
    notes_regex: Regex | None = None
    project: Reference | None = None
    category: Reference

    @model_validator(mode="after")
    def _has_a_matcher(self) -> RuleSpec:
        if self.task is None and self.notes_regex is None and self.project is None:
            raise PydanticCustomError(
                "no_matcher", "needs at least one matcher: task, notes_regex or project"
            )
        return self


class PersonSpec(_Strict):
    email: Email
    name: Name
    role: Role | None = None


class _RateSpec(_Strict):
    person: Reference | None = None
    role: Role | None = None
    rate: RateAmount
    valid_from: Date | None = Field(default=None, alias="from")
    valid_to: Date | None = Field(default=None, alias="to")

    @field_validator("valid_to")
    @classmethod
    def _not_before_from(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value < start:
            raise PydanticCustomError(
                "to_before_from", "earlier than from ({start})", {"start": start.isoformat()}
            )
        return value

    def _check_person_or_role(self) -> None:
        if self.person is not None and self.role is not None:
            raise PydanticCustomError(
                "person_and_role", "names both a person and a role; a rate row is for one of them"
            )


class FirmRateSpec(_RateSpec):
    """A firm-wide rate (levels 7 and 8): for exactly one person or one role."""

    @model_validator(mode="after")
    def _person_or_role(self) -> FirmRateSpec:
        self._check_person_or_role()
        if self.person is None and self.role is None:
            raise PydanticCustomError(
                "no_target",
                "names neither a person nor a role; the firm-wide default rate is "
                "firm.default_rate",
            )
        return self


class ClientRateSpec(_RateSpec):
    """A client rate (levels 1 to 6): optionally for one project, and one person or one role."""

    project: Reference | None = None

    @model_validator(mode="after")
    def _person_or_role(self) -> ClientRateSpec:
        self._check_person_or_role()
        return self


class RoundingSpec(_Strict):
    increment_minutes: Minutes = 0
    mode: RoundingModeValue = "up"
    locus: RoundingLocusValue = "entry"


class CapSpec(_Strict):
    project: Reference
    amount: MoneyAmount


class MilestoneSpec(_Strict):
    """A part of a fixed fee (billing semantics 13.1): an amount or a percent of the fee."""

    name: Name
    amount: MoneyAmount | None = None
    percent: Percent | None = None
    due: Date | None = None

    @model_validator(mode="after")
    def _amount_or_percent(self) -> MilestoneSpec:
        if (self.amount is None) == (self.percent is None):
            raise PydanticCustomError(
                "amount_or_percent", "give an amount or a percent of the fee (one of the two)"
            )
        if self.percent is not None and self.percent <= 0:
            raise PydanticCustomError("percent_zero", "a percent of the fee above 0")
        return self


class FixedFeeSpec(_Strict):
    fee: MoneyAmount
    show_time: bool = True
    milestones: Annotated[list[MilestoneSpec], BeforeValidator(_empty_list_if_none)] = []

    @model_validator(mode="after")
    def _names_once(self) -> FixedFeeSpec:
        names = [m.name.casefold() for m in self.milestones]
        if len(names) != len(set(names)):
            raise PydanticCustomError("milestone_twice", "names a milestone twice")
        return self


class ProjectSpec(_Strict):
    code: ProjectCode | None = None
    name: Name
    billing: ProjectBillingValue = "hourly"
    fixed_fee: FixedFeeSpec | None = None

    @model_validator(mode="after")
    def _fee_with_fixed_fee_billing(self) -> ProjectSpec:
        if self.billing == "fixed_fee" and self.fixed_fee is None:
            raise PydanticCustomError(
                "fee_missing", "billing is fixed_fee: give its fixed_fee (fee and milestones)"
            )
        if self.billing != "fixed_fee" and self.fixed_fee is not None:
            raise PydanticCustomError(
                "fee_not_fixed",
                "has a fixed_fee but billing is {billing}, not fixed_fee",
                {"billing": self.billing},
            )
        return self


class RetainerSpec(_Strict):
    """A client's retainer (13.2); `opening_balance` is a top-up written once, when the client
    has no ledger rows yet."""

    monthly_amount: (
        Annotated[
            Decimal, BeforeValidator(_to_decimal), Field(gt=0, max_digits=14, decimal_places=2)
        ]
        | None
    ) = None
    rollover: bool = True
    opening_balance: (
        Annotated[
            Decimal, BeforeValidator(_to_decimal), Field(gt=0, max_digits=14, decimal_places=2)
        ]
        | None
    ) = None


class EngagementCapSpec(_Strict):
    """A budget over several periods (13.3): hours or an amount (or both) in a window."""

    project: Reference
    hours: (
        Annotated[
            Decimal, BeforeValidator(_to_decimal), Field(gt=0, max_digits=10, decimal_places=2)
        ]
        | None
    ) = None
    amount: MoneyAmount | None = None
    starts_on: Date = Field(alias="from")
    ends_on: Date = Field(alias="to")

    @model_validator(mode="after")
    def _limit_and_window(self) -> EngagementCapSpec:
        if self.hours is None and self.amount is None:
            raise PydanticCustomError("no_limit", "give hours or an amount (or both)")
        if self.ends_on < self.starts_on:
            raise PydanticCustomError(
                "to_before_from",
                "ends ({end}) before it starts ({start})",
                {"end": self.ends_on.isoformat(), "start": self.starts_on.isoformat()},
            )
        return self


class ClientSpec(_Strict):
    """A client, its policy (billing semantics section 3, same defaults) and its own rows."""

    name: Name
    currency: Currency | None = None
    rounding: Annotated[RoundingSpec, BeforeValidator(_empty_dict_if_none)] = Field(
        default_factory=RoundingSpec
    )
    minimum_minutes: Minutes = 0
    non_billable_categories: Annotated[list[Reference], BeforeValidator(_empty_list_if_none)] = []
    billing_codes: Annotated[dict[str, BillingCodeText], BeforeValidator(_empty_dict_if_none)] = {}
    require_billing_codes: bool = False
    rate_multipliers: Annotated[dict[str, Factor], BeforeValidator(_empty_dict_if_none)] = {}
    discount_percent: Percent = Decimal(0)
    caps: Annotated[list[CapSpec], BeforeValidator(_empty_list_if_none)] = []
    group_lines_by: GroupByValue = "entry"
    show_non_billable: bool = False
    bill_approved_only: bool = False
    invoice_per_project: bool = False
    payment_terms_days: Days = 30
    billing_address: PrintedText | None = None
    billing_email: Email | None = None
    po_number: PoNumber | None = None
    requires_utbms: bool = False
    ledes_client_id: LedesClientId | None = None
    tax_code: Reference | None = None
    retainer: RetainerSpec | None = None
    engagement_caps: Annotated[list[EngagementCapSpec], BeforeValidator(_empty_list_if_none)] = []
    projects: Annotated[list[ProjectSpec], BeforeValidator(_empty_list_if_none)] = []
    rates: Annotated[list[ClientRateSpec], BeforeValidator(_empty_list_if_none)] = []
    rules: Annotated[list[RuleSpec], BeforeValidator(_empty_list_if_none)] = []


class RulesDocument(_Strict):
    """A whole rules file, its fields validated one by one.

    Only `invoices.rulesfile.loading.load_rules` returns one whose references are checked too.
    """

    firm: FirmSpec
    tax_codes: Annotated[list[TaxCodeSpec], BeforeValidator(_empty_list_if_none)] = []
    categories: Annotated[list[CategorySpec], BeforeValidator(_empty_list_if_none)] = []
    rules: Annotated[list[RuleSpec], BeforeValidator(_empty_list_if_none)] = []
    people: Annotated[list[PersonSpec], BeforeValidator(_empty_list_if_none)] = []
    rates: Annotated[list[FirmRateSpec], BeforeValidator(_empty_list_if_none)] = []
    clients: Annotated[list[ClientSpec], BeforeValidator(_empty_list_if_none)] = []
