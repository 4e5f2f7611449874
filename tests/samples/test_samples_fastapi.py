"""The FastAPI sample API (HTTP and WebSocket) through Starlette's test client, issuer in process."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from servers import redis_server
from starlette.testclient import TestClient, WebSocketDenialResponse

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import dpop_headers
from sample_projects.common import SampleSettings
from sample_projects.fastapi_api import create_app
from sample_projects.issuer.inprocess import InProcessIssuer

BASE = "http://testserver"


def make_client(issuer: InProcessIssuer, env: Mapping[str, str] | None = None) -> TestClient:
    settings = SampleSettings.from_env(env or {}, default_port=8003)
    return TestClient(create_app(settings, validator=issuer.validator(settings)))


@pytest.fixture
def client(issuer: InProcessIssuer) -> Iterator[TestClient]:
    with make_client(issuer) as client:
        yield client


def test_me_returns_the_bound_identity(client: TestClient, key: DPoPKey, token: str) -> None:
    response = client.get("/api/me", headers=dpop_headers(key, "GET", f"{BASE}/api/me", token))
    assert response.status_code == 200
    assert response.json() == {
        "sub": "demo-client",
        "client_id": "demo-client",
        "jkt": key.jkt,
        "scopes": ["notes:read", "notes:write"],
        "scheme": "DPoP",
    }


def test_health_is_open_and_openapi_lists_the_dpop_scheme(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert any(scheme.get("scheme") == "DPoP" for scheme in schemes.values())


def test_no_credentials_get_the_challenge(client: TestClient) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("DPoP algs=")


def test_replay_stolen_token_and_bearer_are_refused(client: TestClient, key: DPoPKey, token: str) -> None:
    headers = dpop_headers(key, "GET", f"{BASE}/api/me", token)
    assert client.get("/api/me", headers=headers).status_code == 200
    replayed = client.get("/api/me", headers=headers)
    assert replayed.status_code == 401 and 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
    thief = DPoPKey.generate("ES256")
    stolen = client.get("/api/me", headers=dpop_headers(thief, "GET", f"{BASE}/api/me", token))
    assert stolen.status_code == 401 and 'error="invalid_token"' in stolen.headers["www-authenticate"]
    bearer = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401 and bearer.headers["www-authenticate"].startswith("DPoP")


def test_notes_need_the_write_scope(client: TestClient, issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    url = f"{BASE}/api/notes"
    created = client.post("/api/notes", json={"text": "hello"}, headers=dpop_headers(key, "POST", url, token))
    assert created.status_code == 201
    assert created.json() == {"id": 1, "text": "hello", "author": "demo-client"}
    read_only = issuer.token(key, "notes:read")
    refused = client.post("/api/notes", json={"text": "x"}, headers=dpop_headers(key, "POST", url, read_only))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    invalid = client.post("/api/notes", json={"text": ""}, headers=dpop_headers(key, "POST", url, token))
    assert invalid.status_code == 422


def test_websocket_echoes_the_identity(client: TestClient, key: DPoPKey, token: str) -> None:
    headers = dpop_headers(key, "GET", "ws://testserver/ws", token)  # ws:// counts as http:// for htu
    with client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json()["jkt"] == key.jkt
        ws.send_text("ping")
        assert ws.receive_json() == {"echo": "ping", "sub": "demo-client"}


def test_websocket_without_a_valid_proof_is_refused(client: TestClient, key: DPoPKey, token: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("/ws"):
            pass
    assert denied.value.status_code == 401
    thief = DPoPKey.generate("ES256")
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("/ws", headers=dpop_headers(thief, "GET", f"{BASE}/ws", token)):
            pass
    assert denied.value.status_code == 401
    assert 'error="invalid_token"' in denied.value.headers["www-authenticate"]


def test_env_configures_nonce_and_public_url(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    public = "https://api.example.com"
    with make_client(issuer, {"DPOP_NONCE": "always", "DPOP_PUBLIC_URL": public}) as client:
        challenged = client.get("/api/me", headers=dpop_headers(key, "GET", f"{public}/api/me", token))
        assert challenged.status_code == 401
        assert 'error="use_dpop_nonce"' in challenged.headers["www-authenticate"]
        nonce = challenged.headers["dpop-nonce"]
        answered = client.get("/api/me", headers=dpop_headers(key, "GET", f"{public}/api/me", token, nonce=nonce))
        assert answered.status_code == 200
        # The WebSocket route shares the verifier and its settings: nonce required, public URL used.
        ws_headers = dpop_headers(key, "GET", "wss://api.example.com/ws", token, nonce=nonce)
        with client.websocket_connect("/ws", headers=ws_headers) as ws:
            assert ws.receive_json()["sub"] == "demo-client"


def test_env_redis_store_catches_a_replay_across_instances(issuer: InProcessIssuer, key: DPoPKey, token: str) -> None:
    with redis_server() as port:
        env = {"DPOP_REPLAY_STORE": f"redis://127.0.0.1:{port}/0"}
        with make_client(issuer, env) as first, make_client(issuer, env) as second:
            headers = dpop_headers(key, "GET", f"{BASE}/api/me", token)
            assert first.get("/api/me", headers=headers).status_code == 200
            replayed = second.get("/api/me", headers=headers)
            assert replayed.status_code == 401
            assert 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]


def test_a_host_outside_the_allowed_hosts_is_refused(client: TestClient, key: DPoPKey, token: str) -> None:
    """A proof made for another server that accepts the same tokens, replayed here with its Host (issue 19 §1.8)."""
    other = "http://other-api.example/api/me"
    refused = client.get(other, headers=dpop_headers(key, "GET", other, token))
    assert refused.status_code == 400
    assert 'error="invalid_request"' in refused.headers["www-authenticate"]
    assert client.get("/api/me", headers=dpop_headers(key, "GET", f"{BASE}/api/me", token)).status_code == 200


def test_env_allowed_hosts(issuer: InProcessIssuer, key: DPoPKey, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPOP_ALLOWED_HOSTS", "api.example.com, .internal.example")
    with make_client(issuer) as client:
        assert client.get("/api/me", headers=dpop_headers(key, "GET", f"{BASE}/api/me", token)).status_code == 400
        url = "http://svc.internal.example/api/me"
        assert client.get(url, headers=dpop_headers(key, "GET", url, token)).status_code == 200
