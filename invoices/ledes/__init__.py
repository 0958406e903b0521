"""LEDES for law firms (issue 13): UTBMS codes per line, pre-send checks of an invoice's
narratives, and the LEDES 1998B file of an approved invoice with its validator.

- `codes`: the UTBMS task, activity and expense codes of an invoice line
- `checks`: the pre-send checks (UTBMS codes where the client requires them, block billing,
  vague narratives), shown on the review page and run by the export
- `file`: the LEDES 1998B file (`build_ledes`) and its validator (`validate_ledes`)

docs/ledes.md describes the export; docs/billing-semantics.md has the rules.
"""

from invoices.ledes.checks import Finding, presend_checks
from invoices.ledes.codes import CodeSet, LineCodes, line_codes
from invoices.ledes.file import FIELDS, LedesRefused, build_ledes, validate_ledes

__all__ = [
    "FIELDS",
    "CodeSet",
    "Finding",
    "LedesRefused",
    "LineCodes",
    "build_ledes",
    "line_codes",
    "presend_checks",
    "validate_ledes",
]
