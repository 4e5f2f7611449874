"""pytest plugin: fixtures for testing DPoP-protected views (registered as the ``dpop`` pytest11 entry point).

Fixtures
--------
``dpop_issuer``    (session) a :class:`~dpop_middleware.testing.TestIssuer`: JWKS + bound tokens.
                   Its issuer and audience come from the ini options ``dpop_issuer`` and
                   ``dpop_audience`` (defaults ``https://issuer.test`` / ``https://api.test``).
``dpop_key``       a fresh ES256 :class:`~dpop_middleware.client.DPoPKey`.
``dpop_token``     factory: ``dpop_token(scope="read", key=None, **claims)`` -> an access token
                   bound to ``key`` (default ``dpop_key``); ``key=False`` for an unbound token.
``dpop_verifier``  a :class:`~dpop_middleware.DPoPVerifier` trusting ``dpop_issuer``.
``dpop_headers``   factory: ``dpop_headers(method, url, token=None, key=None, nonce=None)`` ->
                   ``{"Authorization": "DPoP ...", "DPoP": proof}`` (token default: ``dpop_token()``).
``dpop_client``    factory: ``dpop_client(test_client, base_url=None, key=None, token=None, scope="read")``
                   -> a :class:`~dpop_middleware.testing.DPoPTestClient` signing every request of a
                   Django, Flask or Starlette test client.

Example (Flask)::

    def test_me(dpop_issuer, dpop_client, dpop_key):
        app = create_app(dpop_issuer.flask_config())
        client = dpop_client(app.test_client())
        assert client.get("/api/me").json["jkt"] == dpop_key.jkt

Django: ``override_settings(DPOP=dpop_issuer.django_settings())`` then ``dpop_client(Client())``.
Starlette: ``DPoPMiddleware(app, verifier=dpop_verifier)`` then ``dpop_client(TestClient(app))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest

from ..client import DPoPKey
from ..verifier import DPoPVerifier
from . import DPoPTestClient, TestIssuer
from . import dpop_headers as make_dpop_headers

__all__ = ["dpop_client", "dpop_headers", "dpop_issuer", "dpop_key", "dpop_token", "dpop_verifier"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("dpop_issuer", "issuer (iss) of the dpop_issuer fixture's tokens", default="https://issuer.test")
    parser.addini("dpop_audience", "audience (aud) of the dpop_issuer fixture's tokens", default="https://api.test")


@pytest.fixture(scope="session")
def dpop_issuer(pytestconfig: pytest.Config) -> TestIssuer:
    """One test authorization server per session, so an app configured once can trust it."""
    return TestIssuer(str(pytestconfig.getini("dpop_issuer")), str(pytestconfig.getini("dpop_audience")))


@pytest.fixture
def dpop_key() -> DPoPKey:
    """A fresh ES256 client key."""
    return DPoPKey.generate("ES256")


TokenFactory = Callable[..., str]


@pytest.fixture
def dpop_token(dpop_issuer: TestIssuer, dpop_key: DPoPKey) -> TokenFactory:
    """Factory of access tokens bound to ``dpop_key`` (or to ``key=``; ``key=False``: unbound)."""

    def make(scope: str = "read", *, key: DPoPKey | Literal[False] | None = None, **claims: Any) -> str:
        if key is False:
            return dpop_issuer.token(None, scope=scope, **claims)
        return dpop_issuer.token((key or dpop_key).jkt, scope=scope, **claims)

    return make


@pytest.fixture
def dpop_verifier(dpop_issuer: TestIssuer) -> DPoPVerifier:
    """A verifier trusting ``dpop_issuer`` (in-memory replay store, default options)."""
    return DPoPVerifier(dpop_issuer.validator())


@pytest.fixture
def dpop_headers(dpop_key: DPoPKey, dpop_token: TokenFactory) -> Callable[..., dict[str, str]]:
    """Factory of ``Authorization`` + ``DPoP`` headers for one request."""

    def make(
        method: str, url: str, token: str | None = None, *, key: DPoPKey | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        signer = key or dpop_key
        return make_dpop_headers(signer, method, url, token or dpop_token(key=signer), nonce=nonce)

    return make


@pytest.fixture
def dpop_client(dpop_key: DPoPKey, dpop_token: TokenFactory) -> Callable[..., DPoPTestClient]:
    """Factory wrapping a Django, Flask or Starlette test client so that it signs every request."""

    def wrap(
        test_client: Any,
        *,
        base_url: str | None = None,
        key: DPoPKey | None = None,
        token: str | None = None,
        scope: str = "read",
    ) -> DPoPTestClient:
        signer = key or dpop_key
        return DPoPTestClient(test_client, signer, token or dpop_token(scope, key=signer), base_url=base_url)

    return wrap
