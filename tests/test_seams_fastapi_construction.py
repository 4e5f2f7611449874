"""Issue 19 §2: a token validator where a ``DPoPVerifier`` belongs is refused at construction.

``DPoPBearer(validator)`` used to be accepted and then answer 500 on every request. Now each ASGI layer
raises ``TypeError`` naming what it expects and how to make one, at start-up.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.starlette import DPoPAuthBackend, DPoPMiddleware
from dpop_middleware.testing import TestIssuer


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience="http://api.test")


def not_verifiers(issuer: TestIssuer) -> list[Any]:
    return [issuer.validator(), lambda token: {"sub": "x"}, None, "dpop_middleware.DPoPVerifier"]


def test_dpop_bearer_refuses_a_validator(issuer: TestIssuer) -> None:
    for wrong in not_verifiers(issuer):
        with pytest.raises(TypeError) as info:
            DPoPBearer(wrong)
        message = str(info.value)
        assert "DPoPBearer" in message and "DPoPVerifier" in message
        assert type(wrong).__name__ in message
        assert "DPoPBearer(DPoPVerifier(" in message  # how to make one


def test_dpop_middleware_refuses_a_validator(issuer: TestIssuer) -> None:
    for wrong in not_verifiers(issuer):
        with pytest.raises(TypeError, match=r"DPoPMiddleware\(verifier=\.\.\.\) expects a DPoPVerifier"):
            DPoPMiddleware(PlainTextResponse("x"), verifier=wrong)


def test_dpop_auth_backend_refuses_a_validator(issuer: TestIssuer) -> None:
    with pytest.raises(TypeError, match=r"DPoPAuthBackend expects a DPoPVerifier"):
        DPoPAuthBackend(issuer.validator())


def test_starlette_app_with_a_wrong_verifier_fails_at_start_up(issuer: TestIssuer) -> None:
    """Starlette builds its middleware stack on the first event: lifespan start-up, before any request."""
    app = Starlette(
        routes=[Route("/", PlainTextResponse("ok"))],
        middleware=[Middleware(DPoPMiddleware, verifier=issuer.validator())],
    )
    with pytest.raises(TypeError, match="expects a DPoPVerifier"), TestClient(app):
        pass


def test_a_real_verifier_is_accepted(issuer: TestIssuer) -> None:
    verifier = DPoPVerifier(issuer.validator())
    assert DPoPBearer(verifier).verifier is verifier
    assert DPoPMiddleware(PlainTextResponse("x"), verifier=verifier).verifier is verifier
    assert DPoPAuthBackend(verifier).verifier is verifier
