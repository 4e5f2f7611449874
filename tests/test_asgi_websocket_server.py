"""A real WebSocket handshake through uvicorn (with the `websockets` library) and the ASGI middleware."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from servers import asgi_apps_server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer(audience="https://api.test")


@pytest.fixture(scope="module")
def server(issuer: TestIssuer) -> Iterator[int]:
    with asgi_apps_server(issuer, "--no-proxy-headers", "--ws", "websockets") as port:
        yield port


@pytest.mark.parametrize("mount", ["untrusted", "bare"])
def test_websocket_upgrade_with_a_proof_for_the_http_url(server: int, issuer: TestIssuer, mount: str) -> None:
    key = DPoPKey.generate()
    # The client signs the ws:// URL it dials, with htm GET: ws maps to http (RFC 6455 upgrade).
    url = f"ws://127.0.0.1:{server}/{mount}/ws"
    headers = dpop_headers(key, "GET", url, issuer.token(key.jkt))
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        body = json.loads(ws.recv(timeout=10))
    assert body["jkt"] == key.jkt


def test_websocket_upgrade_without_credentials_gets_the_challenge(server: int) -> None:
    with pytest.raises(InvalidStatus) as caught:
        with connect(f"ws://127.0.0.1:{server}/untrusted/ws", open_timeout=10):
            pass
    response = caught.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('DPoP algs="')


def test_websocket_proof_replayed_is_refused(server: int, issuer: TestIssuer) -> None:
    key = DPoPKey.generate()
    url = f"ws://127.0.0.1:{server}/untrusted/ws"
    headers = dpop_headers(key, "GET", url, issuer.token(key.jkt))
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        ws.recv(timeout=10)
    with pytest.raises(InvalidStatus) as caught:
        with connect(url, additional_headers=headers, open_timeout=10):
            pass
    assert caught.value.response.status_code == 401
    assert 'error="invalid_dpop_proof"' in caught.value.response.headers["WWW-Authenticate"]
