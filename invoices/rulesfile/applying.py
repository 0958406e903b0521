"""A validated rules document -> the database, in one transaction.

The file is the whole billing configuration, applied with these semantics:
- firm settings: updated in place (the one Firm row);
- every row is matched to the database by its natural key and written only if it changed, so
  an unchanged import writes nothing (no new ids, no audit rows), and the ids that entries,
  classifications and invoice lines cite survive a re-import:
  categories by key, people by email, clients by name, projects by code (else name within the
  client), and rules, rates, billing codes, rate multipliers and caps by the keys described in
  `invoices.rulesfile.rows`;
- each listed client's policy is set to exactly what the file says (defaults for what it
  leaves out);
- rows in the file's scope that the file does not list (categories, firm-wide rules and rates,
  and the rules, rates, codes, multipliers and caps of listed clients; e.g. made in the admin)
  are kept and named in the summary, and deleted only with `prune`. People, clients and
  projects absent from the file are always kept (time entries point at them), and the rows of
  clients absent from the file are left alone.

Problems only the database can reveal (a used category pruned, a project code that belongs to
another client, a kept rate the file would overlap) are collected before anything is written
and raised together.

The work is in three steps, one module each: `planning` reads the plan (the file beside the
rows it updates), `checks` finds what only the database can reveal, and `writing` writes it;
`summary` is what the import reports.
"""

from __future__ import annotations

from django.db import transaction

from invoices.models import Firm
from invoices.rulesfile.checks import problems
from invoices.rulesfile.errors import RulesFileInvalid
from invoices.rulesfile.loading import check_references, load_rules
from invoices.rulesfile.planning import Plan
from invoices.rulesfile.schema import RulesDocument
from invoices.rulesfile.summary import ApplySummary, Tally
from invoices.rulesfile.writing import write

# `Tally` and `ApplySummary` were defined here; their old import path keeps working.
__all__ = ["ApplySummary", "Tally", "apply_rules", "import_rules"]


def import_rules(text: str, *, dry_run: bool = False, prune: bool = False) -> ApplySummary:
    """Validate and apply a rules file, all or nothing. With dry_run, roll back at the end;
    with prune, delete the rows in the file's scope that it does not list."""
    document = load_rules(text)
    with transaction.atomic():
        summary = apply_rules(document, prune=prune)
        if dry_run:
            transaction.set_rollback(True)
            summary.dry_run = True
    if not dry_run and summary.changed():
        # Changed rules, policies or categories may decide differently: decisions are re-taken
        # (frozen entries are not touched). An import that changed nothing leaves them be.
        from invoices.classification import classify_entries, entries_to_classify

        classify_entries(entries_to_classify())
    return summary


def apply_rules(document: RulesDocument, *, prune: bool = False) -> ApplySummary:
    """Make the database's billing configuration what the document says (module docstring)."""
    check_references(document)
    with transaction.atomic():
        # One import at a time: two interleaved imports would match rows the other is changing.
        Firm.load()
        firm = Firm.objects.select_for_update().get(pk=1)
        plan = Plan.read(document, prune=prune)
        errors = problems(plan)
        if errors:
            raise RulesFileInvalid(errors)
        return write(plan, firm)
