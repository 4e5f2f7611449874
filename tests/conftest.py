import sys
from pathlib import Path

import pytest

# Shared test helpers (adapter_cases, fakes, servers) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from fakes import TestClock

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer


@pytest.fixture
def issuer() -> TestIssuer:
    """A fresh test authorization server (a module may override it, e.g. with a fixed issuer URL)."""
    return TestIssuer()


@pytest.fixture
def key() -> DPoPKey:
    """A fresh ES256 client key."""
    return DPoPKey.generate()


@pytest.fixture
def clock() -> TestClock:
    """A settable clock at ``fakes.NOW`` (``clock.advance(seconds)`` moves it)."""
    return TestClock()
