"""Pre-send checks of an invoice, for clients whose billing guidelines are strict (law firms'
clients, LEDES): each finding names the line or entry and says what to do.

They apply to the invoices of a client whose policy `requires_utbms` (a LEDES client: its
billing guidelines and e-billing system are what reject block billing and vague narratives);
other invoices have none. Three checks, each a simple rule on purpose (docs/billing-semantics.md,
"LEDES and UTBMS"):

- UTBMS codes: every billed time line needs a
  task and an activity code of the code set, every expense line an expense code
  (`invoices.ledes.codes`). These findings block the LEDES export: the client's system would
  reject the file.
- Block billing: one entry's narrative describes several tasks. The narrative is split on ";"
  and on the words "and", "&", "then", "also" and "+"; when two parts or more each contain a task
  verb (`TASK_VERBS`), it is block billing. "Meeting with Ana and Ben" is one task; "Review
  contract; draft memo to client" is two.
- Vague narratives: an entry whose narrative is one of `VAGUE_NARRATIVES` ("work on file",
  "attention to matter", "review", ...) or has fewer than `MIN_NARRATIVE_WORDS` words.

The narrative checks are warnings (a person decides); they never block the export. An entry's
narrative is what the client reads: the reviewer's wording if there is one, else its note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from invoices.ledes.codes import CodeSet, line_codes
from invoices.models import ClientPolicy, Invoice, InvoiceEntry, InvoiceLine, UtbmsCode

MIN_NARRATIVE_WORDS = 4

VAGUE_NARRATIVES = frozenset(
    {
        "attention to file",
        "attention to matter",
        "file review",
        "follow up",
        "follow-up",
        "misc",
        "miscellaneous",
        "prepare",
        "research",
        "review",
        "review file",
        "various",
        "work on case",
        "work on file",
        "work on matter",
    }
)

TASK_VERBS = frozenset(
    {
        "analyze",
        "analyse",
        "appear",
        "attend",
        "call",
        "confer",
        "conference",
        "correspond",
        "discuss",
        "draft",
        "edit",
        "email",
        "e-mail",
        "file",
        "interview",
        "meet",
        "negotiate",
        "prepare",
        "research",
        "review",
        "revise",
        "telephone",
        "travel",
        "write",
    }
)

_PART_SEPARATORS = re.compile(r";|\s(?:and|&|then|also|\+)\s", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'-]*")
# A verb's common forms: "review", "reviews", "reviewed", "reviewing", "revised", "drafting".
_SUFFIXES = ("s", "es", "ed", "d", "ing")

TIME_KINDS = (InvoiceLine.Kind.TIME,)
EXPENSE_KINDS = (InvoiceLine.Kind.EXPENSE,)


@dataclass(frozen=True)
class Finding:
    check: str  # "utbms", "block_billing" or "vague"
    subject: str  # which line or entry, as a person finds it on the review page
    message: str
    blocks_export: bool = False

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


def presend_checks(*, invoice: Invoice, code_set: CodeSet | None = None) -> list[Finding]:
    """Every finding of the invoice, lines first (in position order), then entries by date."""
    lines = list(invoice.lines.select_related("category", "person").order_by("position"))
    if not _requires_utbms(invoice):
        return []
    code_set = code_set or CodeSet.load()
    findings = [f for line in lines for f in _utbms_findings(line, code_set)]
    findings.extend(_narrative_findings(invoice))
    return findings


def _requires_utbms(invoice: Invoice) -> bool:
    policy = ClientPolicy.objects.filter(client_id=invoice.client_id).first()
    return policy is not None and policy.requires_utbms


def line_subject(line: InvoiceLine) -> str:
    who = f", {line.person.name}" if line.person_id and line.person else ""
    return f"line {line.position} ({line.description[:60]}{who})"


def _utbms_findings(line: InvoiceLine, code_set: CodeSet) -> list[Finding]:
    if line.kind not in (*TIME_KINDS, *EXPENSE_KINDS):
        return []
    codes = line_codes(line, code_set)
    where = (
        f"set it on category {line.category.name!r} or in the entry's billing code"
        if line.category
        else "set it in the line's billing code"
    )
    wanted = (
        [("expense", codes.expense, UtbmsCode.Kind.EXPENSE, "E101")]
        if line.kind in EXPENSE_KINDS
        else [
            ("task", codes.task, UtbmsCode.Kind.TASK, "L120"),
            ("activity", codes.activity, UtbmsCode.Kind.ACTIVITY, "A104"),
        ]
    )
    findings = []
    for what, code, kind, example in wanted:
        if not code:
            message = f"no UTBMS {what} code, which this client requires; {where} (e.g. {example})"
        elif code_set.kind_of(code) != kind:
            message = f"{code!r} is not a UTBMS {what} code; {where} (e.g. {example})"
        else:
            continue
        findings.append(Finding("utbms", line_subject(line), message, blocks_export=True))
    return findings


def _narrative_findings(invoice: Invoice) -> list[Finding]:
    links = (
        InvoiceEntry.objects.filter(invoice=invoice, state=InvoiceEntry.State.BILLED)
        .select_related("entry", "entry__person", "entry__classification")
        .order_by("entry__date", "entry__person__name", "entry__id")
    )
    findings = []
    for link in links:
        entry = link.entry
        classification = getattr(entry, "classification", None)
        text = (classification.description if classification else "") or entry.notes
        subject = f"entry {entry.date:%Y-%m-%d} {entry.person.name} ({text[:60]!r})"
        tasks = block_billed_tasks(text)
        if len(tasks) > 1:
            findings.append(
                Finding(
                    "block_billing",
                    subject,
                    f"describes {len(tasks)} tasks in one entry ({'; '.join(tasks)}); split "
                    "it into one entry per task with its own time",
                )
            )
        reason = vague_reason(text)
        if reason:
            findings.append(
                Finding("vague", subject, f"{reason}; say what was done, on what, and why")
            )
    return findings


def block_billed_tasks(text: str) -> list[str]:
    """The parts of a narrative that each name a task (two or more: block billing)."""
    parts = [part.strip() for part in _PART_SEPARATORS.split(text) if part.strip()]
    return [part for part in parts if _has_task_verb(part)]


def _has_task_verb(part: str) -> bool:
    return any(stem in TASK_VERBS for word in _WORD.findall(part.lower()) for stem in _stems(word))


def _stems(word: str) -> list[str]:
    """The word and what it may be a form of: "reviewed" -> "review", "preparing" -> "prepare"."""
    stems = [word]
    for suffix in _SUFFIXES:
        if suffix and word.endswith(suffix):
            stems.append(word[: -len(suffix)])
    if word.endswith("ing"):
        stems.append(word[:-3] + "e")
    return stems


def vague_reason(text: str) -> str:
    """Why a narrative is too vague for a client's review, or "" when it is not."""
    normalized = " ".join(_WORD.findall(text.lower()))
    if normalized in VAGUE_NARRATIVES:
        return f"the narrative {text.strip()!r} is too vague"
    words = len(text.split())
    if words < MIN_NARRATIVE_WORDS:
        return (
            f"the narrative has {words} word{'s' if words != 1 else ''} "
            f"(fewer than {MIN_NARRATIVE_WORDS})"
        )
    return ""
