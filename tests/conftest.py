import pytest
from django.conf import settings

SHARED_BAD = settings.BASE_DIR / "tests" / "data" / "bad"
NORTHWIND = settings.BASE_DIR / "data" / "northwind"


@pytest.fixture
def northwind_dir():
    return NORTHWIND


@pytest.fixture
def bad_dir():
    return SHARED_BAD


@pytest.fixture(autouse=True)
def toggl_fakes_unpaced(settings):
    """The suites' fake Toggl servers answer at once and keep a quota only when a test sets
    one, so they are not held to Toggl's published quotas (one request a second would add
    seconds to every Toggl sync); tests/test_pacing.py checks that pacing with a fake clock."""
    settings.TOGGL_REQUESTS_PER_HOUR = 1_000_000
    settings.TOGGL_REQUESTS_PER_SECOND = 1_000_000
