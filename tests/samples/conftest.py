"""Fixtures shared by the sample-API tests (Django, Flask, FastAPI): one in-process issuer per module,
one client key, and a token bound to it with the samples' scopes."""

from __future__ import annotations

import pytest

from dpop_middleware.client import DPoPKey
from sample_projects.issuer.inprocess import InProcessIssuer


@pytest.fixture(scope="module")
def issuer() -> InProcessIssuer:
    return InProcessIssuer()


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey.generate("ES256")


@pytest.fixture(scope="module")
def token(issuer: InProcessIssuer, key: DPoPKey) -> str:
    return issuer.token(key, "notes:read notes:write")
