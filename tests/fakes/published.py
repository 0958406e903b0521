"""The vendors' published example payloads (tests/fixtures/<vendor>/, each README naming its
source), read by the fakes so that what a fake serves is shaped by the published example: a
fake builds its answers from these templates, and the contract tests check the fake's keys
against them, so the fake cannot drift from the example without a test noticing."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@cache
def _read(vendor: str, name: str) -> str:
    return (FIXTURES / vendor / name).read_text(encoding="utf-8")


def text(vendor: str, name: str) -> str:
    return _read(vendor, name)


def load(vendor: str, name: str) -> Any:
    """A fresh copy of the fixture's JSON (callers may change it)."""
    return copy.deepcopy(json.loads(_read(vendor, name)))
