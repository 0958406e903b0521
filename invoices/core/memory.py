"""Classification memory (billing semantics section 2.3): what a client's decided notes say
about a new note. Pure Python, no Django.

Decided notes are the notes of approved entries and of reviewers' decisions (any period, the
current one included). A note equal to a decided one (after `normalize_notes`) is decided by
it, confidence 1.0. When approved history and reviewers disagree about a note, the most recent
reviewer decision wins; approved entries that disagree among themselves, with no decision,
leave the note to a reviewer (`AMBIGUOUS`).

Similar memory: a note that matches no decided note exactly is compared with the decided
notes after masking what varies between otherwise equal notes (people's names, numbers,
dates) on rapidfuzz's token-set ratio. The best score must reach the threshold, and every
decided note within `SIMILAR_MARGIN` of it must say the same category; the score, rounded
down to 3 places, is the confidence. Below the threshold, `near_matches` gives the closest
decided notes as examples for the language model.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from rapidfuzz import fuzz, process

from invoices.core.rounding import round_confidence

# Marks notes whose approved history disagrees: memory then does not decide.
AMBIGUOUS = "\x00ambiguous"

DEFAULT_SIMILAR_THRESHOLD = Decimal("0.85")
# Decided notes scoring within this of the best one are "the closest": they must agree.
SIMILAR_MARGIN = Decimal("0.02")
NEAR_MATCHES = 3
# How much of a matched note a reason quotes (review reasons are stored in 300 characters).
QUOTED_NOTE_CHARS = 120

# One-character placeholders: a masked name or number should weigh about nothing in the
# ratio, so "touch base w/ Sam" (-> "touch base with ~") is close to "touch base w/
# procurement"; a word-long placeholder ("name") would weigh like a word that differs.
NAME, NUMBER, DATE = "~", "#", "@"

_MONTHS = (
    "january|february|march|april|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
# One pattern, tried once per note: ISO dates (2026-10-05); 05.10.2026, 10/05, 5-10-26; "Oct 5",
# "October 5th, 2026", "5 Oct", a month or a weekday alone. "May" counts only capitalized
# (lower-case "may" is a verb).
_DATES = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}\b"
    r"|\b\d{1,2}[./-]\d{1,2}(?:[./-]\d{2,4})?\b"
    rf"|\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+)?(?:(?i:{_MONTHS})|May)\b\.?"
    rf"(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?(?:,?\s+\d{{4}})?"
    rf"|\b(?i:{_WEEKDAYS})\b"
)
_WORD = re.compile(r"\S+")
_WITH = {"with", "w"}
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")


def _strip(token: str) -> str:
    return _EDGE_PUNCTUATION.sub("", token)


def person_name_tokens(names: Iterable[str]) -> frozenset[str]:
    """The words of people's names ("Sam Lee" -> sam, lee), casefolded; initials and
    one-letter words are left out (they would mask "a", "i")."""
    tokens = set()
    for name in names:
        for word in re.split(r"[\s\-.']+", name):
            if len(word) >= 2:
                tokens.add(word.casefold())
    return frozenset(tokens)


@functools.lru_cache(maxsize=50_000)
def mask_notes(notes: str, names: frozenset[str] = frozenset()) -> str:
    """The note as similarity compares it: dates, numbers and people's names replaced by
    placeholders (a capitalized word right after "w/" or "with" counts as a name too), "w/"
    read as "with", then lower-cased without punctuation.

    >>> mask_notes("Touch base w/ Sam re: Q3, 2026-10-05", frozenset({"sam"}))
    'touch base with ~ re # @'
    """
    # Cached: a month repeats its notes, and every classification run masks the client's
    # decided notes again.
    text = _DATES.sub(f" {DATE} ", unicodedata.normalize("NFKC", notes))
    out: list[str] = []
    after_with = False
    for raw in _WORD.findall(text):
        folded = raw.casefold()
        if folded.startswith("w/") or _strip(folded) in _WITH:
            out.append("with")
            after_with = True
            raw = raw[2:] if folded.startswith("w/") else ""  # "w/Sam"
        if raw == DATE:
            token = DATE
        else:
            word = _strip(raw)
            if not word:
                continue
            if any(ch.isdigit() for ch in word):
                token = NUMBER
            elif word.casefold() in names or (after_with and word[:1].isupper()):
                token = NAME
            else:
                token = "".join(
                    ch for ch in word.casefold() if not unicodedata.category(ch).startswith("P")
                )
        # "with Sam Lee" is one name: after a name, a capitalized word is still part of it.
        after_with = token == NAME
        if token and not (out and out[-1] == token and token in (NAME, NUMBER, DATE)):
            out.append(token)
    return " ".join(out)


def similarity(masked: str, other: str) -> Decimal:
    """Token-set ratio of two masked notes, in [0, 1], rounded down to 3 places.

    rapidfuzz's token-set ratio calls any note whose words are a subset of the other's a
    perfect match ("meeting" vs "internal meeting" = 100): for such pairs the token-sort
    ratio is used instead, so words added to a decided note count against the match."""
    if not masked or not other:
        return Decimal(0)
    words, other_words = set(masked.split()), set(other.split())
    if words != other_words and (words <= other_words or other_words <= words):
        score = fuzz.token_sort_ratio(masked, other)
    else:
        score = fuzz.token_set_ratio(masked, other)
    return round_confidence(Decimal(score) / 100)


@dataclass(frozen=True)
class DecidedNote:
    """A decided note: its memory key, a text of it as written (shown), and its category
    (or `AMBIGUOUS`)."""

    normalized: str
    notes: str
    category: str


@dataclass(frozen=True)
class NearMatch:
    notes: str
    category: str
    score: Decimal


@dataclass(frozen=True)
class SimilarOutcome:
    """`category` when similar memory decides (with the note it matched and its score);
    else `reason` says why the closest notes did not decide ("" when none is close)."""

    category: str | None = None
    notes: str = ""
    score: Decimal | None = None
    reason: str = ""

    @property
    def label(self) -> str:
        return f"similar to '{_quoted(self.notes)}' ({self.score})" if self.category else ""


def _quoted(notes: str) -> str:
    notes = " ".join(notes.split())
    return notes if len(notes) <= QUOTED_NOTE_CHARS else notes[: QUOTED_NOTE_CHARS - 1] + "…"


@dataclass
class SimilarMemory:
    """A client's decided notes, masked once, for matching many notes (one classification
    run). Results are cached per masked note: a month repeats its notes."""

    decided: list[DecidedNote]
    names: frozenset[str] = frozenset()
    threshold: Decimal = DEFAULT_SIMILAR_THRESHOLD
    margin: Decimal = SIMILAR_MARGIN
    _scores: dict[str, list[tuple[Decimal, int]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._scores = {}

    @functools.cached_property
    def _masked(self) -> list[str]:
        # On first use: most runs decide every entry before memory, and never need it.
        return [mask_notes(d.notes, self.names) for d in self.decided]

    def _ranked(self, notes: str) -> list[tuple[Decimal, int]]:
        """(score, index) of the decided notes, best first (ties: earlier decided first)."""
        masked = mask_notes(notes, self.names)
        if masked not in self._scores:
            if not masked or not self._masked:
                self._scores[masked] = []
            else:
                # rapidfuzz scores every pair in C; `similarity` then rescores the few close
                # ones (a score the subset rule may only lower) in Decimal.
                # Only notes near the threshold can decide (a float cutoff, one point lower).
                floor = max(0.0, float((self.threshold - self.margin) * 100) - 1)
                hits = process.extract(
                    masked,
                    self._masked,
                    scorer=fuzz.token_set_ratio,
                    score_cutoff=floor,
                    limit=None,
                )
                ranked = [(similarity(masked, self._masked[i]), i) for _, _, i in hits]
                ranked.sort(key=lambda item: (-item[0], item[1]))
                self._scores[masked] = ranked
        return self._scores[masked]

    def match(self, notes: str) -> SimilarOutcome:
        ranked = self._ranked(notes)
        if not ranked or ranked[0][0] < self.threshold:
            return SimilarOutcome()
        best = ranked[0][0]
        closest = [(score, self.decided[i]) for score, i in ranked if best - score <= self.margin]
        categories = {d.category for _, d in closest}
        if len(categories) == 1 and AMBIGUOUS not in categories:
            top = closest[0][1]
            return SimilarOutcome(category=top.category, notes=top.notes, score=best)
        shown = "; ".join(
            f"'{_quoted(d.notes)}' ({score}) -> "
            f"{'disagreeing history' if d.category == AMBIGUOUS else d.category}"
            for score, d in closest[:3]
        )
        return SimilarOutcome(reason=f"similar notes disagree: {shown}")

    def near(self, notes: str, limit: int = NEAR_MATCHES) -> list[NearMatch]:
        return near_matches(notes, self, limit=limit)


def near_matches(
    notes: str, memory: SimilarMemory, *, limit: int = NEAR_MATCHES
) -> list[NearMatch]:
    """The `limit` decided notes closest to `notes` (note, category, score), best first,
    without a threshold: examples for the language model's prompt when similar memory did
    not decide. Notes with disagreeing history are left out (they teach nothing)."""
    masked = mask_notes(notes, memory.names)
    if not masked or not memory.decided:
        return []
    scored = sorted(
        (
            (similarity(masked, other), i)
            for i, other in enumerate(memory._masked)
            if memory.decided[i].category != AMBIGUOUS
        ),
        key=lambda item: (-item[0], item[1]),
    )
    return [
        NearMatch(memory.decided[i].notes, memory.decided[i].category, score)
        for score, i in scored[:limit]
        if score > 0
    ]


class ClientMemory(dict[str, str]):
    """One client's memory: normalized notes -> category (or `AMBIGUOUS`), as tier 3 reads
    it, with the client's similar memory when the firm has it on (`similar`, else None)."""

    similar: SimilarMemory | None = None


def build_client_memory(
    *,
    approved: Iterable[tuple[str, str, str]],
    decisions: Iterable[tuple[str, str, str]],
    names: frozenset[str] = frozenset(),
    similar_threshold: Decimal | None = DEFAULT_SIMILAR_THRESHOLD,
) -> ClientMemory:
    """`approved`: (normalized notes, notes as written, category) of entries on approved
    invoices; `decisions`: the same of reviewers' decisions, *oldest first* (the most recent
    decision about a note wins, over approved history too). `similar_threshold` None: no
    similar memory."""
    memory = ClientMemory()
    written: dict[str, str] = {}
    for normalized, notes, category in approved:
        if not normalized:
            continue
        seen = memory.get(normalized)
        memory[normalized] = category if seen in (None, category) else AMBIGUOUS
        written.setdefault(normalized, notes)
    for normalized, notes, category in decisions:
        if not normalized:
            continue
        memory[normalized] = category
        written[normalized] = notes
    if similar_threshold is not None:
        memory.similar = SimilarMemory(
            [DecidedNote(key, written[key], category) for key, category in memory.items()],
            names=names,
            threshold=similar_threshold,
        )
    return memory
