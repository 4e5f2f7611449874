import sys
from pathlib import Path

import pytest

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer

# Shared test helpers (adapter_cases, servers) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def issuer() -> TestIssuer:
    """A fresh test authorization server (a module may override it, e.g. with a fixed issuer URL)."""
    return TestIssuer()


@pytest.fixture
def key() -> DPoPKey:
    """A fresh ES256 client key."""
    return DPoPKey.generate()
