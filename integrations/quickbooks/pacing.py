"""Requests to one QuickBooks company paced under its limit (500 per minute per realm)."""

from __future__ import annotations

import threading
import time

from django.conf import settings


class _Pacer:
    """At most one request per `interval` per realm from this process (QuickBooks allows 500
    per minute per realm; a push also holds a per-realm lock so processes take turns)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def wait(self, realm_id: str, interval: float) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(realm_id, now))
            self._next[realm_id] = start + interval
        if start > now:
            time.sleep(start - now)

    def settle(self, realm_id: str) -> None:
        """Sleep until this process may send its next request to the realm (used before
        handing the realm's push lock to another process)."""
        with self._lock:
            wait = self._next.get(realm_id, 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)


pacer = _Pacer()


def settle_pacing(realm_id: str) -> None:
    pacer.settle(realm_id)


def request_interval_seconds() -> float:
    """Seconds between two requests to one realm under `QBO_REQUESTS_PER_MINUTE` (default 400,
    leaving room under QuickBooks' 500 for people using QuickBooks at the same time)."""
    return 60 / int(getattr(settings, "QBO_REQUESTS_PER_MINUTE", 400))
