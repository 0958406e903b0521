"""Note text helpers shared by importing and classification."""

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def normalize_notes(notes: str) -> str:
    """Lower-case, punctuation removed, whitespace collapsed: the memory key of billing
    semantics section 2.3 ("Sync w/ client!" and "sync w/ client" are the same note)."""
    lowered = unicodedata.normalize("NFKC", notes).casefold()
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in lowered)
    return _SPACES.sub(" ", kept).strip()
