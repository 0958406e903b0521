"""The Message Batches API's side of the adapter (50% cheaper; results within 24 hours): a
batch's status, and its result lines checked like single answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from integrations.claude.answers import ParsedAnswer, loads_json, parse_message
from integrations.claude.prompt import ClassificationPrompt


@dataclass(frozen=True)
class BatchStatus:
    id: str
    processing_status: str
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    canceled: int = 0
    processing: int = 0

    @property
    def ended(self) -> bool:
        return self.processing_status == "ended"


@dataclass(frozen=True)
class BatchItemResult:
    """One request of a batch: its parsed answer, or why there is none (errored, expired,
    canceled: the entries stay undecided and a later run asks again)."""

    custom_id: str
    answer: ParsedAnswer | None
    failure: str = ""


def parse_batch_results(
    content: bytes, prompts: Mapping[str, ClassificationPrompt]
) -> list[BatchItemResult]:
    """Every result line of an ended batch, validated like a single answer. Lines come in
    no particular order; they are matched on custom_id."""
    results: list[BatchItemResult] = []
    seen: set[str] = set()
    for line in content.splitlines():
        if not line.strip():
            continue
        try:
            row = loads_json(line)
        except ValueError:
            continue  # a torn line: its entries count as missing below
        custom_id = row.get("custom_id") if isinstance(row, Mapping) else None
        if custom_id not in prompts or custom_id in seen:
            continue
        seen.add(custom_id)
        result = row.get("result") if isinstance(row.get("result"), Mapping) else {}
        kind = result.get("type")
        if kind == "succeeded" and isinstance(result.get("message"), Mapping):
            parsed = parse_message(result["message"], prompts[custom_id])
            results.append(BatchItemResult(custom_id, parsed))
        else:
            results.append(BatchItemResult(custom_id, None, _batch_failure(result)))
    for custom_id in prompts:
        if custom_id not in seen:
            results.append(BatchItemResult(custom_id, None, "no result in the batch"))
    return results


def _batch_failure(result: Mapping[str, Any]) -> str:
    kind = str(result.get("type") or "unknown")
    error = result.get("error")
    inner = error.get("error") if isinstance(error, Mapping) else None
    if isinstance(inner, Mapping) and inner.get("type"):
        return f"{kind}: {inner.get('type')}"
    return kind
