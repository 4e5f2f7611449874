"""Starlette specifics: WebSockets through TestClient, the auth backend's user, nonces, mounts."""

from __future__ import annotations

import time

import pytest
from asgi_apps.apps import starlette_app
from fakes import TestClock
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from dpop_middleware import DPoPVerifier, NonceKeyring
from dpop_middleware.client import DPoPKey
from dpop_middleware.starlette import (
    DPoPAuthBackend,
    DPoPAuthenticationMiddleware,
    DPoPMiddleware,
    DPoPUser,
    requires_scopes,
)
from dpop_middleware.testing import TestIssuer, dpop_headers

KEYRING = NonceKeyring({"k1": b"0123456789abcdef0123"})


def test_websocket_upgrade_with_proof_is_accepted(issuer: TestIssuer, key: DPoPKey) -> None:
    app = starlette_app([Middleware(DPoPMiddleware, verifier=DPoPVerifier(issuer.validator()))])
    # TestClient connects to ws://testserver/ws: the proof may name it ws:// or http://, htm GET.
    headers = dpop_headers(key, "GET", "ws://testserver/ws", issuer.token(key.jkt))
    with TestClient(app).websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json()["jkt"] == key.jkt


def test_websocket_upgrade_without_proof_gets_the_http_challenge(issuer: TestIssuer) -> None:
    verifier = DPoPVerifier(issuer.validator())
    app = starlette_app([Middleware(DPoPMiddleware, verifier=verifier)])
    with pytest.raises(WebSocketDenialResponse) as denied, TestClient(app).websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == f'DPoP algs="{" ".join(verifier.algs)}"'
    assert denied.value.headers["cache-control"] == "no-store"


def test_websocket_proof_for_wrong_path_is_denied(issuer: TestIssuer, key: DPoPKey) -> None:
    app = starlette_app([Middleware(DPoPMiddleware, verifier=DPoPVerifier(issuer.validator()))])
    headers = dpop_headers(key, "GET", "ws://testserver/other", issuer.token(key.jkt))
    with pytest.raises(WebSocketDenialResponse) as denied, TestClient(app).websocket_connect("/ws", headers=headers):
        pass
    assert 'error="invalid_dpop_proof"' in denied.value.headers["www-authenticate"]


async def whoami(request: Request) -> Response:
    user = request.user
    assert isinstance(user, DPoPUser)
    return JSONResponse(
        {"name": user.display_name, "id": user.identity, "scopes": request.auth.scopes, "jkt": user.principal.jkt}
    )


def test_backend_gives_starlette_user_and_credentials(issuer: TestIssuer, key: DPoPKey) -> None:
    backend = DPoPAuthBackend(DPoPVerifier(issuer.validator()))
    app = Starlette(
        routes=[Route("/me", whoami)], middleware=[Middleware(DPoPAuthenticationMiddleware, backend=backend)]
    )
    token = issuer.token(key.jkt, scope="read write")
    resp = TestClient(app).get("/me", headers=dpop_headers(key, "GET", "http://testserver/me", token))
    assert resp.json() == {"name": "alice", "id": "alice", "scopes": ["read", "write"], "jkt": key.jkt}


def test_stock_authentication_middleware_needs_on_error(issuer: TestIssuer) -> None:
    """Documented: without on_error Starlette turns the rejection into a plain 400."""
    backend = DPoPAuthBackend(DPoPVerifier(issuer.validator()))
    app = Starlette(routes=[Route("/me", whoami)], middleware=[Middleware(AuthenticationMiddleware, backend=backend)])
    resp = TestClient(app).get("/me")
    assert resp.status_code == 400 and "www-authenticate" not in resp.headers


def rolled_nonce_headers(app: Starlette, issuer: TestIssuer, key: DPoPKey, clock: TestClock) -> list[str]:
    client = TestClient(app)
    token = issuer.token(key.jkt)
    url = "http://testserver/protected"
    nonce = client.get("/protected", headers=dpop_headers(key, "GET", url, token, iat=clock.now)).headers["dpop-nonce"]
    clock.advance(KEYRING.step_seconds)  # next nonce step: the core hands out a fresh nonce on success
    resp = client.get("/protected", headers=dpop_headers(key, "GET", url, token, nonce=nonce, iat=clock.now))
    assert resp.status_code == 200 and resp.json()["jkt"] == key.jkt
    return resp.headers.get_list("dpop-nonce")


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_fresh_nonce_on_successful_response(issuer: TestIssuer, key: DPoPKey, layer: str) -> None:
    clock = TestClock(time.time())
    verifier = DPoPVerifier(issuer.validator(), nonce_policy="always", nonce_keyring=KEYRING, clock=clock)
    if layer == "middleware":
        stack = [Middleware(DPoPMiddleware, verifier=verifier)]
    else:
        stack = [Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier))]
    assert rolled_nonce_headers(starlette_app(stack), issuer, key, clock) == [KEYRING.issue(clock.now)]


def test_middleware_under_a_mount(issuer: TestIssuer, key: DPoPKey) -> None:
    inner = DPoPMiddleware(starlette_app([]), verifier=DPoPVerifier(issuer.validator()), exempt_paths=["/health"])
    client = TestClient(Starlette(routes=[Mount("/api", app=inner)]))
    token = issuer.token(key.jkt)
    ok = client.get("/api/protected", headers=dpop_headers(key, "GET", "http://testserver/api/protected", token))
    assert ok.status_code == 200, ok.text
    wrong = client.get("/api/protected", headers=dpop_headers(key, "GET", "http://testserver/protected", token))
    assert wrong.status_code == 401
    assert client.get("/api/health").status_code == 200


def test_middleware_under_a_server_root_path(issuer: TestIssuer, key: DPoPKey) -> None:
    """TestClient(root_path=...) is a server mounted under /prefix (it sends the path without it)."""
    app = starlette_app([Middleware(DPoPMiddleware, verifier=DPoPVerifier(issuer.validator()))])
    client = TestClient(app, root_path="/prefix")
    token = issuer.token(key.jkt)
    ok = client.get("/protected", headers=dpop_headers(key, "GET", "http://testserver/prefix/protected", token))
    assert ok.status_code == 200, ok.text
    wrong = client.get("/protected", headers=dpop_headers(key, "GET", "http://testserver/protected", token))
    assert wrong.status_code == 401


def test_requires_scopes_without_a_dpop_layer_fails_loudly() -> None:
    @requires_scopes("write")
    def endpoint(request: Request) -> Response:
        return JSONResponse({})

    client = TestClient(Starlette(routes=[Route("/x", endpoint)]), raise_server_exceptions=True)
    with pytest.raises(RuntimeError, match="requires_scopes needs"):
        client.get("/x")


def test_backend_middleware_denies_a_websocket_with_the_exact_rejection(issuer: TestIssuer, key: DPoPKey) -> None:
    verifier = DPoPVerifier(issuer.validator())
    app = starlette_app([Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier))])
    client = TestClient(app)
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == f'DPoP algs="{" ".join(verifier.algs)}"'
    headers = dpop_headers(key, "GET", "ws://testserver/ws", issuer.token(key.jkt))
    with client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json()["jkt"] == key.jkt


@requires_scopes("write")
async def scoped_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"ok": True})
    await websocket.close()


def test_requires_scopes_on_a_websocket_endpoint(issuer: TestIssuer, key: DPoPKey) -> None:
    verifier = DPoPVerifier(issuer.validator())
    app = Starlette(
        routes=[WebSocketRoute("/ws", scoped_ws)], middleware=[Middleware(DPoPMiddleware, verifier=verifier)]
    )
    client = TestClient(app)
    url = "ws://testserver/ws"
    headers = dpop_headers(key, "GET", url, issuer.token(key.jkt, scope="read"))
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws", headers=headers):
        pass
    assert denied.value.status_code == 403
    assert 'error="insufficient_scope"' in denied.value.headers["www-authenticate"]
    headers = dpop_headers(key, "GET", url, issuer.token(key.jkt, scope="write"))
    with client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json() == {"ok": True}
