"""Client-facing wording of an entry when neither a reviewer nor the model worded it (issue 16).

A tracker note is written for colleagues ("sync w/ client re: Q3 mtg"); an invoice line is read
by the client. Without a model the line says the category and the note tidied:
"Client meeting: Sync with client regarding Q3 meeting". The tidying is deliberately small and
predictable, so a reviewer can tell what a line will say before the draft is built:

1. whitespace collapsed and the ends trimmed;
2. the abbreviations of `ABBREVIATIONS` written out (whole words only, any case; "&" is kept);
3. the first letter capitalized (the rest is left as written: "GC", "API", "iOS" stay).

Pure Python, no Django: drafting calls it for each entry it prices.
"""

from __future__ import annotations

import re

# (abbreviation, written out). Whole words only, matched in any case. Longer forms first where
# one is the start of another ("w/o" before "w/"). Kept short on purpose: an expansion that is
# wrong for some note ("dev" for "device"?) is worse on an invoice than the abbreviation.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("w/o", "without"),
    ("w/", "with"),
    ("re:", "regarding"),
    ("b/c", "because"),
    ("mtgs", "meetings"),
    ("mtg", "meeting"),
    ("mgmt", "management"),
    ("approx", "approximately"),
    ("appt", "appointment"),
    ("thru", "through"),
    ("reqs", "requirements"),
    ("msg", "message"),
)


def _pattern(abbreviation: str) -> str:
    # Not inside a longer word or path ("saw/", "prw/o"); an abbreviation ending in a letter
    # must also end its word ("mtg" but not "mtgroom"). One ending in "/" or ":" takes the
    # spaces after it, so "w/client" and "w/ client" both read "with client".
    start = r"(?<![\w/])"
    if abbreviation[-1].isalnum():
        return start + re.escape(abbreviation) + r"(?![\w/])"
    return start + re.escape(abbreviation) + r"\s*"


_ABBREVIATION = re.compile(
    "|".join(f"({_pattern(short)})" for short, _ in ABBREVIATIONS), re.IGNORECASE
)


def _written_out(match: re.Match[str]) -> str:
    # Every alternative of the pattern is a group, so a match always has its last index.
    assert match.lastindex is not None
    short, long = ABBREVIATIONS[match.lastindex - 1]
    return long if short[-1].isalnum() else long + " "


def tidy_note(notes: str) -> str:
    """A tracker note made presentable: abbreviations written out, first letter capitalized."""
    text = " ".join(notes.split())
    text = " ".join(_ABBREVIATION.sub(_written_out, text).split())
    return text[:1].upper() + text[1:]


def client_wording(*, worded: str, notes: str, category_name: str, deliberate: bool = False) -> str:
    """What an entry's line says to the client.

    `worded` is the classification's description: a reviewer's or the model's wording, or the
    raw note itself when nobody worded it (classification copies the note there, so wording
    that differs from the note was chosen by someone). `deliberate` says a reviewer or the
    model chose it even if it repeats the note. Chosen wording is kept as it is; otherwise the
    line says the category name and the tidied note.
    """
    worded = worded.strip()
    if worded and (deliberate or " ".join(worded.split()) != " ".join(notes.split())):
        return worded
    tidied = tidy_note(notes)
    category_name = category_name.strip()
    if not category_name:
        return tidied
    if not tidied or tidied.casefold() == category_name.casefold():
        return category_name
    if tidied.casefold().startswith(category_name.casefold() + " "):
        return tidied  # "Travel to the client's site" needs no "Travel: " before it
    return f"{category_name}: {tidied}"
