"""Requests to one QuickBooks company paced under Intuit's limits (api-notes 4.7 [D]): 500
requests per minute per realm, and 10 concurrent requests per app and realm.

Two guards, both per realm in this process:
- an interval between request starts (`QBO_REQUESTS_PER_MINUTE`, default 400: room under 500
  for people using QuickBooks at the same time), and behind it a sliding window that never lets
  more than 500 starts fall within one minute whatever the interval says (unless
  `QBO_REQUESTS_PER_MINUTE` is deliberately set above 500, for a test server: then that);
- a semaphore of `QBO_MAX_CONCURRENT_REQUESTS` (default 10) held for each request's whole
  round trip.
A push also holds a per-realm lock so processes take turns (invoices.quickbooks.pushing). The
clock and the sleep are injectable, so tests check the pacing without waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings

from integrations.pacing import SlidingWindowBudget

REQUESTS_PER_MINUTE_LIMIT = 500  # Intuit's, per realm
MAX_CONCURRENT_LIMIT = 10  # Intuit's, per app and realm


class Pacer:
    """At most one request start per `interval` per realm, at most 500 in any minute, and at
    most `max_concurrent` under way at once."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._minute: dict[str, SlidingWindowBudget] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def _guards(
        self, realm_id: str, max_concurrent: int
    ) -> tuple[SlidingWindowBudget, threading.BoundedSemaphore]:
        per_minute = max(REQUESTS_PER_MINUTE_LIMIT, configured_requests_per_minute())
        with self._lock:
            minute = self._minute.get(realm_id)
            if minute is None or minute.limit != per_minute:
                minute = self._minute[realm_id] = SlidingWindowBudget(
                    limit=per_minute, window_seconds=60, clock=self._clock, sleep=self._sleep
                )
            if realm_id not in self._slots:
                self._slots[realm_id] = threading.BoundedSemaphore(
                    min(max_concurrent, MAX_CONCURRENT_LIMIT)
                )
            return minute, self._slots[realm_id]

    def wait(self, realm_id: str, interval: float) -> None:
        """Wait for this realm's next start (the interval, then the minute's budget)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next.get(realm_id, now))
            self._next[realm_id] = start + interval
        if start > now:
            self._sleep(start - now)
        minute, _ = self._guards(realm_id, max_concurrent_requests())
        minute.acquire()

    @contextmanager
    def request(self, realm_id: str, interval: float) -> Iterator[None]:
        """Around one request: paced start, and a concurrency slot for its round trip."""
        _, slots = self._guards(realm_id, max_concurrent_requests())
        with slots:
            self.wait(realm_id, interval)
            yield

    def settle(self, realm_id: str) -> None:
        """Sleep until this process may send its next request to the realm (used before
        handing the realm's push lock to another process)."""
        with self._lock:
            wait = self._next.get(realm_id, 0.0) - self._clock()
        if wait > 0:
            self._sleep(wait)


pacer = Pacer()


def settle_pacing(realm_id: str) -> None:
    pacer.settle(realm_id)


def configured_requests_per_minute() -> int:
    return int(getattr(settings, "QBO_REQUESTS_PER_MINUTE", 400))


def request_interval_seconds() -> float:
    """Seconds between two requests to one realm under `QBO_REQUESTS_PER_MINUTE` (default 400,
    leaving room under QuickBooks' 500 for people using QuickBooks at the same time)."""
    return 60 / configured_requests_per_minute()


def max_concurrent_requests() -> int:
    return int(getattr(settings, "QBO_MAX_CONCURRENT_REQUESTS", MAX_CONCURRENT_LIMIT))
