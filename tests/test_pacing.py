"""Requests paced under each vendor's published limit before it answers 429 (Harvest 100 per
15 s, QuickBooks 500 per minute and 10 at once, Toggl per plan and one a second), checked with
an injected clock and sleep: no test waits, and nothing here measures time."""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack

import pytest

from integrations import harvest, toggl
from integrations.pacing import SlidingWindowBudget
from integrations.quickbooks.pacing import Pacer
from tests.fakes.harvest_server import harvest_server  # noqa: F401 - fixture
from tests.fakes.toggl_server import toggl_server  # noqa: F401 - fixture


class FakeClock:
    """A clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def most_in_any_window(starts: list[float], window: float) -> int:
    return max(sum(1 for t in starts if s <= t < s + window) for s in starts)


def test_a_budget_never_lets_more_than_its_limit_into_a_window():
    clock = FakeClock()
    budget = SlidingWindowBudget(limit=100, window_seconds=15, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(250):
        budget.acquire()
        starts.append(clock.now)

    assert most_in_any_window(starts, 15) == 100
    # The first hundred go at once; the 101st waits for the first to leave the window.
    assert starts[:100] == [0.0] * 100
    assert (starts[100], starts[200], starts[-1]) == (15.0, 30.0, 30.0)
    assert clock.sleeps == [15.0, 15.0]


def test_harvest_defaults_to_its_published_limit():
    client = harvest.HarvestClient(token="t", account_id="9", user_agent="a (b@c.example)")
    assert (client._budget.limit, client._budget.window_seconds) == (100, 15)
    # Clients of one account share one budget in a process; another account has its own.
    same = harvest.HarvestClient(token="u", account_id="9", user_agent="a (b@c.example)")
    other = harvest.HarvestClient(token="t", account_id="10", user_agent="a (b@c.example)")
    assert same._budget is client._budget
    assert other._budget is not client._budget


def test_harvest_paces_its_pages_through_the_budget(harvest_server):  # noqa: F811
    fake = harvest_server
    fake.add_user(1, "Ann", "Lee", "ann@example.com")
    fake.add_project(2, "Website", "W", 3, "Acme")
    for n in range(7):
        fake.add_entry(user_id=1, project_id=2, spent_date=dt.date(2026, 1, 1 + n), hours="1")
    clock = FakeClock()
    client = harvest.HarvestClient(
        token=fake.token,
        account_id=fake.account_id,
        user_agent="pacing test (ops@example.com)",
        base_url=fake.url,
        budget=SlidingWindowBudget(limit=3, window_seconds=15, clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
    )

    pages = list(client.time_entry_pages(per_page=1))

    assert len(pages) == 7
    # Three requests per 15 s: the 4th and the 7th wait, and Harvest never had to say 429.
    assert clock.sleeps == [15.0, 15.0]
    assert [status for _, status, _ in fake.answers] == [200] * 7


def test_quickbooks_stays_under_500_a_minute_whatever_the_interval(settings):
    settings.QBO_MAX_CONCURRENT_REQUESTS = 10
    settings.QBO_REQUESTS_PER_MINUTE = 400
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(1200):
        with pacer.request("realm-1", 0):  # no interval: only the minute's budget paces
            starts.append(clock.now)

    assert most_in_any_window(starts, 60) == 500
    assert clock.sleeps == [60.0, 60.0]


def test_quickbooks_above_500_only_when_set_so_for_a_test_server(settings):
    settings.QBO_REQUESTS_PER_MINUTE = 600_000
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    for _ in range(1200):
        with pacer.request("realm-1", 0):
            pass
    assert clock.sleeps == []


def test_quickbooks_interval_spreads_requests(settings):
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    for _ in range(4):
        with pacer.request("realm-1", 0.15):
            pass
    assert [round(s, 2) for s in clock.sleeps] == [0.15, 0.15, 0.15]


def test_quickbooks_holds_at_most_ten_requests_under_way(settings):
    settings.QBO_MAX_CONCURRENT_REQUESTS = 25  # above Intuit's 10: capped
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    with ExitStack() as under_way:
        for _ in range(10):
            under_way.enter_context(pacer.request("realm-1", 0))
        _, slots = pacer._guards("realm-1", 25)
        assert slots.acquire(blocking=False) is False  # an 11th would wait
        # Another company has its own ten.
        under_way.enter_context(pacer.request("realm-2", 0))
    assert slots.acquire(blocking=False) is True
    slots.release()


# --- Toggl: per plan (api-notes 3.4) -------------------------------------------------------


def toggl_client(fake, pacing, **options):
    return toggl.TogglClient(
        api_token=fake.token,
        base_url=fake.api_url,
        reports_url=fake.reports_url,
        pacing=pacing,
        sleep=pacing.burst._sleep,
        **options,
    )


def test_toggl_quotas_are_the_published_ones_per_plan():
    assert toggl.TogglQuotas.of("free") == toggl.TogglQuotas(30, 30, 1)
    assert toggl.TogglQuotas.of("starter") == toggl.TogglQuotas(240, 30, 1)
    assert toggl.TogglQuotas.of("premium") == toggl.TogglQuotas(600, 30, 1)
    # Another plan's figure (or a test server's) replaces both hourly quotas.
    assert toggl.TogglQuotas.of("free", requests_per_hour=5000) == toggl.TogglQuotas(5000, 5000, 1)
    with pytest.raises(ValueError, match="unknown Toggl plan 'gold': one of free, starter"):
        toggl.TogglQuotas.of("gold")


def test_toggl_pacing_follows_the_settings_and_is_shared_per_token(settings):
    settings.TOGGL_PLAN = "starter"
    settings.TOGGL_REQUESTS_PER_HOUR = 0
    settings.TOGGL_REQUESTS_PER_SECOND = 1
    client = toggl.TogglClient(api_token="t1")
    assert client._pacing.quotas == toggl.TogglQuotas(240, 30, 1)
    assert toggl.TogglClient(api_token="t1")._pacing is client._pacing
    assert toggl.TogglClient(api_token="t2")._pacing is not client._pacing
    settings.TOGGL_PLAN = "premium"
    assert toggl.TogglClient(api_token="t1")._pacing.quotas.workspace_per_hour == 600


def test_toggl_free_plan_waits_for_its_hour_instead_of_a_402(toggl_server):  # noqa: F811
    fake = toggl_server
    clock = FakeClock()
    fake.clock = clock  # the fake's own quota counts on the same clock
    fake.hourly_quota = 30  # Free: 30 workspace requests an hour, then 402
    pacing = toggl.TogglPacing(toggl.TogglQuotas.of("free"), clock=clock, sleep=clock.sleep)
    client = toggl_client(fake, pacing, max_wait_seconds=3600)

    for _ in range(31):
        client.projects(str(fake.workspace_id))

    # One a second (the burst limiter), then the 31st waits until the first leaves the hour.
    assert clock.sleeps == [1.0] * 29 + [3600.0 - 29]
    # 31 requests for 31 calls: no 402 was answered and retried (it would have slept 1800 s).
    assert len(fake.requests) == 31


def test_toggl_refuses_to_send_what_the_hour_cannot_take_within_the_wait(toggl_server):  # noqa: F811
    fake = toggl_server
    clock = FakeClock()
    fake.add_user(fake.me_id, "Ana Pereira", "ana@example.com")
    pacing = toggl.TogglPacing(toggl.TogglQuotas.of("premium"), clock=clock, sleep=clock.sleep)
    client = toggl_client(fake, pacing, max_wait_seconds=120)

    for _ in range(30):
        client.me()  # user-scoped: 30 an hour on every plan, Premium too
    with pytest.raises(toggl.TogglQuotaExceeded) as raised:
        client.me()
    assert raised.value.retry_after == 3600 - 29
    assert raised.value.retryable
    assert len(fake.requests) == 30  # the 31st was never sent
    # Workspace requests have Premium's own budget of 600.
    client.projects(str(fake.workspace_id))
    assert len(fake.requests) == 31
