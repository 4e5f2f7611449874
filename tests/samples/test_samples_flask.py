"""The Flask sample API through Flask's test client, with the sample issuer in process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from flask import Flask
from servers import redis_server
from werkzeug.test import TestResponse

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import dpop_headers
from sample_projects.common import SampleSettings
from sample_projects.flask_api import create_app
from sample_projects.issuer.inprocess import InProcessIssuer

BASE = "http://localhost"  # what Flask's test client uses as the request's origin


def make_app(issuer: InProcessIssuer, env: Mapping[str, str] | None = None) -> Flask:
    settings = SampleSettings.from_env(env or {}, default_port=8002)
    return create_app(settings, validator=issuer.validator(settings))


@pytest.fixture
def app(issuer: InProcessIssuer) -> Flask:
    return make_app(issuer)


def call(
    app: Flask, method: str, path: str, headers: Mapping[str, str] | None = None, json: Any = None
) -> TestResponse:
    return app.test_client().open(path, method=method, headers=dict(headers or {}), json=json)


def test_me_returns_the_bound_identity(app: Flask, key: DPoPKey, token: str) -> None:
    response = call(app, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token))
    assert response.status_code == 200
    assert response.json == {
        "sub": "demo-client",
        "client_id": "demo-client",
        "jkt": key.jkt,
        "scopes": ["notes:read", "notes:write"],
        "scheme": "DPoP",
    }


def test_health_is_open(app: Flask) -> None:
    response = call(app, "GET", "/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_no_credentials_get_the_challenge(app: Flask) -> None:
    response = call(app, "GET", "/api/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("DPoP algs=")


def test_replay_stolen_token_and_bearer_are_refused(app: Flask, key: DPoPKey, token: str) -> None:
    headers = dpop_headers(key, "GET", f"{BASE}/api/me", token)
    assert call(app, "GET", "/api/me", headers).status_code == 200
    replayed = call(app, "GET", "/api/me", headers)
    assert replayed.status_code == 401 and 'error="invalid_dpop_proof"' in replayed.headers["WWW-Authenticate"]
    thief = DPoPKey.generate("ES256")
    stolen = call(app, "GET", "/api/me", dpop_headers(thief, "GET", f"{BASE}/api/me", token))
    assert stolen.status_code == 401 and 'error="invalid_token"' in stolen.headers["WWW-Authenticate"]
    bearer = call(app, "GET", "/api/me", {"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401 and bearer.headers["WWW-Authenticate"].startswith("DPoP")


def test_notes_need_the_write_scope(app: Flask, issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    url = f"{BASE}/api/notes"
    created = call(app, "POST", "/api/notes", dpop_headers(key, "POST", url, token), json={"text": "hello"})
    assert created.status_code == 201
    assert created.json == {"id": 1, "text": "hello", "author": "demo-client"}
    read_only = issuer.token(key, "notes:read")
    refused = call(app, "POST", "/api/notes", dpop_headers(key, "POST", url, read_only), json={"text": "x"})
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    invalid = call(app, "POST", "/api/notes", dpop_headers(key, "POST", url, token), json={"text": ""})
    assert (invalid.status_code, (invalid.json or {}).get("error")) == (400, "invalid_note")


def test_env_configures_nonce_and_public_url(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    public = "https://api.example.com/notes-service"
    app = make_app(issuer, {"DPOP_NONCE": "always", "DPOP_PUBLIC_URL": public, "DPOP_NONCE_SECRET": "n" * 24})
    challenged = call(app, "GET", "/api/me", dpop_headers(key, "GET", f"{public}/api/me", token))
    assert challenged.status_code == 401
    assert 'error="use_dpop_nonce"' in challenged.headers["WWW-Authenticate"]
    nonce = challenged.headers["DPoP-Nonce"]
    answered = call(app, "GET", "/api/me", dpop_headers(key, "GET", f"{public}/api/me", token, nonce=nonce))
    assert answered.status_code == 200
    # The public URL, not the Host header, is what the proof must name.
    local = call(app, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token, nonce=nonce))
    assert local.status_code == 401 and 'error="invalid_dpop_proof"' in local.headers["WWW-Authenticate"]


def test_env_names_the_audience_and_the_jwks_uri(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    # The token says aud=dpop-sample-api: an API configured as another audience must refuse it.
    other = make_app(issuer, {"DPOP_AUDIENCE": "https://billing.example.com"})
    response = call(other, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token))
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # An explicit jwks_uri (no discovery) works as well.
    direct = make_app(issuer, {"DPOP_JWKS_URI": "http://127.0.0.1:9000/jwks"})
    response = call(direct, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token))
    assert response.status_code == 200


def test_env_redis_store_catches_a_replay_across_instances(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    with redis_server() as port:
        env = {"DPOP_REPLAY_STORE": f"redis://127.0.0.1:{port}/0", "DPOP_NONCE_SECRET": "shared-nonce-secret-1"}
        first, second = make_app(issuer, env), make_app(issuer, env)  # two workers, one Redis
        headers = dpop_headers(key, "GET", f"{BASE}/api/me", token)
        assert call(first, "GET", "/api/me", headers).status_code == 200
        replayed = call(second, "GET", "/api/me", headers)
        assert replayed.status_code == 401 and 'error="invalid_dpop_proof"' in replayed.headers["WWW-Authenticate"]
