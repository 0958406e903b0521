"""A fake that answers each (method, path) with a recorded answer: a vendor's published example,
as it is in tests/fixtures, so a contract test replays that example through an adapter over
real HTTP. `{url}` in a recorded text (a `links.next`, say) becomes this fake's address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import serving


class ReplayFake:
    def __init__(self) -> None:
        self.url = ""
        self.requests: list[serving.Seen] = []
        self.headers_seen: list[dict[str, str]] = []
        self._answers: dict[tuple[str, str], list[tuple[int, dict[str, str], Any]]] = {}

    def record(
        self,
        method: str,
        path: str,
        payload: Any,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `method path` with `payload` (answers for one path queue up; the
        last one repeats)."""
        self._answers.setdefault((method, path), []).append((status, headers or {}, payload))

    def answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        self.headers_seen.append(headers)
        queue = self._answers.get((method, path))
        if not queue:
            return 404, {}, {"message": f"nothing recorded for {method} {path}"}
        status, extra, payload = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(payload, str):
            return status, extra, payload.replace("{url}", self.url)
        return status, extra, json.loads(json.dumps(payload).replace("{url}", self.url))


@pytest.fixture
def replay_server() -> Iterator[ReplayFake]:
    with serving.serving(ReplayFake(), serving.JsonApiHandler) as fake:
        yield fake
