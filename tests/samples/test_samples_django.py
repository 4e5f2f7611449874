"""The Django + DRF sample API through Django's test client, with the sample issuer in process.

Django is configured once per process: if another test module did it first, the sample's own
settings are applied with ``override_settings`` (which also resets the DPoP adapter's state).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import django
import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import dpop_headers
from sample_projects.common import SampleSettings
from sample_projects.django_api import settings as sample_settings
from sample_projects.django_api.config import dpop_setting
from sample_projects.issuer.inprocess import InProcessIssuer

BASE = "http://testserver"
OVERRIDDEN = ("ROOT_URLCONF", "MIDDLEWARE", "REST_FRAMEWORK", "ALLOWED_HOSTS", "APPEND_SLASH")


def ensure_django() -> None:
    if not settings.configured:
        # Not LOGGING: the sample's handler and level on "dpop_middleware" would leak into other tests.
        names = [name for name in dir(sample_settings) if name.isupper() and name != "LOGGING"]
        settings.configure(**{name: getattr(sample_settings, name) for name in names})
    if not apps.ready:
        django.setup()


@contextmanager
def sample_api(issuer: InProcessIssuer, env: Mapping[str, str] | None = None) -> Iterator[Client]:
    """The sample's settings, with ``DPOP`` built from ``env`` and keys fetched from ``issuer``."""
    ensure_django()
    sample = SampleSettings.from_env(env or {}, default_port=8001)
    values = {name: getattr(sample_settings, name) for name in OVERRIDDEN}
    values["DPOP"] = dpop_setting(sample, validator=issuer.validator(sample))
    with override_settings(**values):
        yield Client()


@pytest.fixture
def client(issuer: InProcessIssuer) -> Iterator[Client]:
    with sample_api(issuer) as client:
        yield client


def call(client: Client, method: str, path: str, headers: Mapping[str, str] | None = None, body: Any = None) -> Any:
    if body is None:
        return client.generic(method, path, headers=dict(headers or {}))
    data = json.dumps(body)
    return client.generic(method, path, data=data, content_type="application/json", headers=dict(headers or {}))


def test_me_returns_the_bound_identity(client: Client, key: DPoPKey, token: str) -> None:
    response = call(client, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token))
    assert response.status_code == 200
    assert response.json() == {
        "sub": "demo-client",
        "client_id": "demo-client",
        "jkt": key.jkt,
        "scopes": ["notes:read", "notes:write"],
        "scheme": "DPoP",
    }


def test_health_is_open(client: Client) -> None:
    response = call(client, "GET", "/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_no_credentials_get_the_challenge(client: Client) -> None:
    response = call(client, "GET", "/api/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("DPoP algs=")


def test_replay_stolen_token_and_bearer_are_refused(client: Client, key: DPoPKey, token: str) -> None:
    headers = dpop_headers(key, "GET", f"{BASE}/api/me", token)
    assert call(client, "GET", "/api/me", headers).status_code == 200
    replayed = call(client, "GET", "/api/me", headers)
    assert replayed.status_code == 401 and 'error="invalid_dpop_proof"' in replayed["WWW-Authenticate"]
    thief = DPoPKey.generate("ES256")
    stolen = call(client, "GET", "/api/me", dpop_headers(thief, "GET", f"{BASE}/api/me", token))
    assert stolen.status_code == 401 and 'error="invalid_token"' in stolen["WWW-Authenticate"]
    bearer = call(client, "GET", "/api/me", {"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401 and bearer["WWW-Authenticate"].startswith("DPoP")


def test_notes_need_the_write_scope(client: Client, issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    url = f"{BASE}/api/notes"
    created = call(client, "POST", "/api/notes", dpop_headers(key, "POST", url, token), body={"text": "hello"})
    assert created.status_code == 201
    assert created.json()["text"] == "hello" and created.json()["author"] == "demo-client"
    read_only = issuer.token(key, "notes:read")
    refused = call(client, "POST", "/api/notes", dpop_headers(key, "POST", url, read_only), body={"text": "x"})
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused["WWW-Authenticate"]
    invalid = call(client, "POST", "/api/notes", dpop_headers(key, "POST", url, token), body={"text": ""})
    assert invalid.status_code == 400 and "text" in invalid.json()


def test_env_configures_nonce_policy(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    with sample_api(issuer, {"DPOP_NONCE": "unsafe_methods"}) as client:
        url = f"{BASE}/api/notes"
        # GET needs no nonce under unsafe_methods, but hands one out for later.
        me = call(client, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token))
        assert me.status_code == 200 and me["DPoP-Nonce"]
        challenged = call(client, "POST", "/api/notes", dpop_headers(key, "POST", url, token), body={"text": "a"})
        assert challenged.status_code == 401 and 'error="use_dpop_nonce"' in challenged["WWW-Authenticate"]
        nonce = challenged["DPoP-Nonce"]
        headers = dpop_headers(key, "POST", url, token, nonce=nonce)
        answered = call(client, "POST", "/api/notes", headers, body={"text": "a"})
        assert answered.status_code == 201


def test_env_configures_public_url(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    public = "https://api.example.com/v1"
    with sample_api(issuer, {"DPOP_PUBLIC_URL": public}) as client:
        ok = call(client, "GET", "/api/me", dpop_headers(key, "GET", f"{public}/api/me", token))
        assert ok.status_code == 200
        local = call(client, "GET", "/api/me", dpop_headers(key, "GET", f"{BASE}/api/me", token))
        assert local.status_code == 401 and 'error="invalid_dpop_proof"' in local["WWW-Authenticate"]
