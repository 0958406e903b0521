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
