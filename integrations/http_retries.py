"""What the tracker adapters share about HTTP: timestamps, Retry-After hints, backoff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from email.utils import parsedate_to_datetime


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 with a trailing Z or an offset, as an aware datetime."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    return value


def retry_after_seconds(value: str | None, *, now: dt.datetime | None = None) -> int | None:
    """A Retry-After style hint as whole seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or dt.datetime.now(dt.UTC)
    return max(0, int((when - now).total_seconds() + 0.999))


class Backoff:
    """Exponential backoff between retries of one request, capped; the sleep is injectable so
    tests do not wait. Mixed into each adapter's client, which sets the four attributes."""

    _backoff: float
    _max_backoff: float
    _max_retries: int
    _sleep: Callable[[float], None]

    def _backoff_delay(self, attempt: int) -> float:
        return min(self._max_backoff, self._backoff * 2**attempt)

    def _backoff_sleep(self, attempt: int) -> None:
        if attempt < self._max_retries:
            self._sleep(self._backoff_delay(attempt))
