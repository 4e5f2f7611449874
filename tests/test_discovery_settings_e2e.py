"""A Django or Flask app configured with only ISSUER and AUDIENCE accepts tokens (issue 21).

The authorization server here is real HTTP on 127.0.0.1: it publishes RFC 8414 metadata naming its
``jwks_uri`` and serves its keys there. The app finds both by itself on the first request, then
accepts a DPoP-bound token, refuses it with another key, and does not fetch again for each request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django_app.harness import django_settings, ensure_django
from fakes import JSONServer

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers

ensure_django()

API = "https://api.example.com"


@dataclass
class DiscoveryServer:
    """An authorization server that only publishes metadata and keys, counting what is fetched."""

    issuer: TestIssuer
    hits: list[str]


@pytest.fixture
def authorization_server() -> Iterator[DiscoveryServer]:
    with JSONServer() as server:
        issuer = TestIssuer(issuer=server.base, audience=API)
        server.documents["/.well-known/oauth-authorization-server"] = {
            "issuer": server.base, "jwks_uri": f"{server.base}/keys",
        }  # fmt: skip
        server.documents["/keys"] = issuer.jwks
        yield DiscoveryServer(issuer, server.hits)


def _story(send: Any, issuer: TestIssuer, path: str) -> list[int]:
    """Two good requests, then the same token with another key: the statuses."""
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    statuses = [send(dpop_headers(key, "GET", API + path, token)) for _ in range(2)]
    thief = DPoPKey.generate()
    statuses.append(send(dpop_headers(thief, "GET", API + path, token)))
    return statuses


def test_flask_with_only_issuer_and_audience(authorization_server: DiscoveryServer) -> None:
    from flask import Flask

    from dpop_middleware.flask import DPoP, current_dpop

    issuer = authorization_server.issuer
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_PUBLIC_URL=API)
    DPoP(app)

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"sub": current_dpop.subject}

    client = app.test_client()
    assert _story(lambda headers: client.get("/me", headers=headers).status_code, issuer, "/me") == [200, 200, 401]
    # Discovered once, keys fetched once: not per request.
    assert authorization_server.hits == ["/.well-known/oauth-authorization-server", "/keys"]


def test_django_with_only_issuer_and_audience(authorization_server: DiscoveryServer) -> None:
    issuer = authorization_server.issuer
    dpop = {"ISSUER": issuer.issuer, "AUDIENCE": issuer.audience, "PUBLIC_URL": API}
    with django_settings(dpop):
        client = Client()

        def send(headers: dict[str, str]) -> int:
            meta = {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}
            return int(client.get("/protected", **meta).status_code)

        assert _story(send, issuer, "/protected") == [200, 200, 401]
    assert authorization_server.hits == ["/.well-known/oauth-authorization-server", "/keys"]


def test_an_unreachable_authorization_server_is_a_503_not_a_401(authorization_server: DiscoveryServer) -> None:
    from flask import Flask

    from dpop_middleware.flask import DPoP

    issuer = TestIssuer(issuer="http://127.0.0.1:9", audience=API)  # nothing listens on the discard port
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_PUBLIC_URL=API)
    DPoP(app)

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {}

    key = DPoPKey.generate()
    response = app.test_client().get("/me", headers=dpop_headers(key, "GET", API + "/me", issuer.token(key.jkt)))
    assert response.status_code == 503 and response.headers.get("Retry-After")
