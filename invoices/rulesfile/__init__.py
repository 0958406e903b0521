"""The rules file: a firm's whole billing configuration as one YAML file (billing semantics
section 9), validated with every problem located, imported all or nothing, and exported.

The exact schema is documented for ops staff in docs/rules-file.md.
"""

from invoices.rulesfile.applying import apply_rules, import_rules
from invoices.rulesfile.errors import RulesError, RulesExportError, RulesFileInvalid
from invoices.rulesfile.exporting import export_rules
from invoices.rulesfile.loading import load_rules
from invoices.rulesfile.schema import RulesDocument
from invoices.rulesfile.summary import ApplySummary, Tally

__all__ = [
    "ApplySummary",
    "RulesDocument",
    "RulesError",
    "RulesExportError",
    "RulesFileInvalid",
    "Tally",
    "apply_rules",
    "export_rules",
    "import_rules",
    "load_rules",
]
