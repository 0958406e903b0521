"""Requests paced under a vendor's published limit before the vendor says 429: a sliding
window of at most `limit` requests per `window_seconds`, shared by every client of one account
in this process. The clock and the sleep are injectable, so tests check the pacing without
waiting and without timing anything."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from integrations.errors import IntegrationError


class BudgetExhausted(IntegrationError):
    """The next request would have to wait longer than the caller may (`wait_seconds`); it was
    not counted. Each adapter turns it into its own rate-limit error."""

    retryable = True

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"the request budget frees a request in {wait_seconds:.0f} s")
        self.wait_seconds = wait_seconds


class SlidingWindowBudget:
    """At most `limit` requests in any `window_seconds`. `acquire()` waits (through `sleep`)
    until the request may go, and returns how long it waited; with `max_wait`, a request that
    would wait longer is refused (BudgetExhausted) instead, and not counted."""

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a budget needs a limit of at least 1 and a positive window")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # When each of the last `limit` requests was (or will be) sent, oldest first.
        self._sent: deque[float] = deque(maxlen=limit)

    def acquire(self, *, max_wait: float | None = None) -> float:
        with self._lock:
            now = self._clock()
            start = now
            if len(self._sent) == self.limit:
                # The request `limit` places back must have left the window first.
                start = max(now, self._sent[0] + self.window_seconds)
            if max_wait is not None and start - now > max_wait:
                raise BudgetExhausted(start - now)
            self._sent.append(start)
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait


class Budgets:
    """One budget per key (an account, a realm) in this process, made on first use."""

    def __init__(self, make: Callable[[], SlidingWindowBudget]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._budgets: dict[str, SlidingWindowBudget] = {}

    def __call__(self, key: str) -> SlidingWindowBudget:
        with self._lock:
            if key not in self._budgets:
                self._budgets[key] = self._make()
            return self._budgets[key]
