"""The outcome of checking one configured connection (`manage.py check_connections`): a line a
person can act on. Shared by the tracker and the QuickBooks checks, so it lives here, below
both apps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    connection: str  # what a person calls it: "Harvest 'Acme' (#3)", "QuickBooks"
    ok: bool
    detail: str  # ok: what was proved; failed: what is wrong and what to do

    def line(self) -> str:
        return f"{self.connection}: {'ok' if self.ok else 'FAILED'}: {self.detail}"
