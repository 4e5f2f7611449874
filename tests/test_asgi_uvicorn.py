"""Every ASGI integration under a real uvicorn on 127.0.0.1: mount prefixes, proxies, raw paths.

Run A: ``--root-path /prefix --no-proxy-headers``, as behind a reverse proxy that strips ``/prefix``:
the client's URL is ``http://127.0.0.1:PORT/prefix/<mount>/...`` while uvicorn receives
``/<mount>/...``. The "reverse proxy" is simulated by sending its headers from 127.0.0.1.
Run B: uvicorn's default ``--proxy-headers`` (trusting 127.0.0.1), which rewrites ``scope["scheme"]``
and ``scope["client"]`` before our middleware runs: pins the interaction documented in
``dpop_middleware.starlette``.

WebSocket upgrades are not tested here: neither ``websockets`` nor ``wsproto`` is installed, so
uvicorn cannot speak WebSocket; ``test_starlette_features`` and ``test_asgi_translate`` cover them.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import httpx
import pytest
from servers import asgi_apps_server

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer(audience="https://api.test")


def serve(issuer: TestIssuer, *flags: str) -> Iterator[str]:
    with asgi_apps_server(issuer, "--lifespan", "on", *flags) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server_a(issuer: TestIssuer) -> Iterator[str]:
    yield from serve(issuer, "--root-path", "/prefix", "--no-proxy-headers")


@pytest.fixture(scope="module")
def server_b(issuer: TestIssuer) -> Iterator[str]:
    yield from serve(issuer)


def get(base: str, path: str, htu: str, issuer: TestIssuer, *, headers: dict[str, str] | None = None,
        method: str = "GET", scope: str = "read") -> httpx.Response:  # fmt: skip
    key = DPoPKey.generate()
    proof = dpop_headers(key, method, htu, issuer.token(key.jkt, scope=scope))
    resp = httpx.request(method, base + path, headers={**proof, **(headers or {})}, timeout=10)
    if resp.status_code == 200 and "jkt" in resp.text:
        assert resp.json()["jkt"] == key.jkt
    return resp


MOUNTS = ["trusted", "untrusted", "bare", "backend", "fastapi"]


@pytest.mark.parametrize("mount", MOUNTS)
def test_root_path_prefix_is_part_of_htu(server_a: str, issuer: TestIssuer, mount: str) -> None:
    path = f"/{mount}/protected"
    ok = get(server_a, path, f"{server_a}/prefix{path}", issuer)
    assert ok.status_code == 200, ok.text
    assert ok.json()["sub"] == "alice"
    wrong = get(server_a, path, server_a + path, issuer)  # the URL uvicorn saw, not the client's
    assert wrong.status_code == 401
    assert 'error="invalid_dpop_proof"' in wrong.headers["www-authenticate"]


@pytest.mark.parametrize("mount", MOUNTS)
def test_no_credentials_and_exempt_and_scopes(server_a: str, issuer: TestIssuer, mount: str) -> None:
    missing = httpx.get(f"{server_a}/{mount}/protected", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('DPoP algs="')
    assert missing.headers["cache-control"] == "no-store"
    if mount != "bare":  # the bare app has no routes: every path is protected
        assert httpx.get(f"{server_a}/{mount}/health", timeout=10).status_code == 200
        scoped = f"/{mount}/scoped"
        denied = get(server_a, scoped, f"{server_a}/prefix{scoped}", issuer)
        assert denied.status_code == 403 and 'error="insufficient_scope"' in denied.headers["www-authenticate"]
        granted = get(server_a, scoped, f"{server_a}/prefix{scoped}", issuer, scope="read write")
        assert granted.status_code == 200


PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com", "X-Forwarded-For": "203.0.113.7"}


def test_trusted_proxy_headers_rebuild_the_public_url(server_a: str, issuer: TestIssuer) -> None:
    path = "/trusted/protected"
    assert get(server_a, path, f"https://api.example.com/prefix{path}", issuer, headers=PROXY).status_code == 200
    # The proxy's own view wins; the direct URL no longer matches.
    assert get(server_a, path, f"{server_a}/prefix{path}", issuer, headers=PROXY).status_code == 401
    edge = {**PROXY, "X-Forwarded-Prefix": "/edge"}
    assert get(server_a, path, f"https://api.example.com/edge/prefix{path}", issuer, headers=edge).status_code == 200
    forwarded = {"Forwarded": 'for=203.0.113.7;proto=https;host="api.example.com:8443"'}
    resp = get(server_a, path, f"https://api.example.com:8443/prefix{path}", issuer, headers=forwarded)
    assert resp.status_code == 200


@pytest.mark.parametrize("mount", ["fastapi", "backend-proxy"])
def test_fastapi_dependency_and_auth_backend_honour_trusted_proxy(server_a: str, issuer: TestIssuer, mount: str) -> None:
    path = f"/{mount}/protected"
    assert get(server_a, path, f"https://api.example.com/prefix{path}", issuer, headers=PROXY).status_code == 200


def test_only_the_trusted_headers_count_even_from_a_trusted_proxy(server_a: str, issuer: TestIssuer) -> None:
    """/proto-only trusts 127.0.0.1 for X-Forwarded-For/-Proto only: a client's X-Forwarded-Host that
    the proxy passes through unchanged must not move the URL the proof is checked against."""
    path = "/proto-only/protected"
    spoofed = get(server_a, path, f"https://api.example.com/prefix{path}", issuer, headers=PROXY)
    assert spoofed.status_code == 401
    host = server_a.removeprefix("http://")
    assert get(server_a, path, f"https://{host}/prefix{path}", issuer, headers=PROXY).status_code == 200
    edge = {"X-Forwarded-Prefix": "/edge", "Forwarded": 'proto=https;host="api.example.com"'}
    assert get(server_a, path, f"{server_a}/edge/prefix{path}", issuer, headers=edge).status_code == 401
    assert get(server_a, path, f"{server_a}/prefix{path}", issuer, headers=edge).status_code == 200


def test_forwarded_headers_ignored_when_peer_not_trusted(server_a: str, issuer: TestIssuer) -> None:
    path = "/untrusted/protected"
    spoofed = get(server_a, path, f"https://api.example.com/prefix{path}", issuer, headers=PROXY)
    assert spoofed.status_code == 401
    assert get(server_a, path, f"{server_a}/prefix{path}", issuer, headers=PROXY).status_code == 200


def test_public_url_overrides_everything(server_a: str, issuer: TestIssuer) -> None:
    path = "/public/protected"
    assert get(server_a, path, "https://api.example.com/base/protected", issuer, headers=PROXY).status_code == 200
    assert get(server_a, path, f"{server_a}/prefix{path}", issuer).status_code == 401


def test_raw_path_encoding_is_what_the_client_signed(server_a: str, issuer: TestIssuer) -> None:
    path = "/trusted/echo/a%21b/caf%C3%A9"
    ok = get(server_a, path, f"{server_a}/prefix{path}", issuer)
    assert ok.status_code == 200, ok.text
    assert ok.json()["path"].endswith("/echo/a!b/café")
    # "%21" and "!" are different URLs to RFC 3986 normalization: a proof for one is no good for the other.
    other = get(server_a, path, f"{server_a}/prefix/trusted/echo/a!b/caf%C3%A9", issuer)
    assert other.status_code == 401


def test_openapi_served_with_the_security_scheme(server_a: str) -> None:
    spec = httpx.get(f"{server_a}/fastapi/openapi.json", timeout=10).json()
    assert spec["components"]["securitySchemes"]["DPoPBearer"] == {
        "type": "http",
        "scheme": "DPoP",
        "description": spec["components"]["securitySchemes"]["DPoPBearer"]["description"],
    }


def test_uvicorn_proxy_headers_set_scheme_before_us(server_b: str, issuer: TestIssuer) -> None:
    """uvicorn trusts 127.0.0.1 by default: X-Forwarded-Proto becomes scope["scheme"] even where we trust nobody."""
    path = "/untrusted/protected"
    assert get(server_b, path, f"https://{server_b[7:]}{path}", issuer, headers=PROXY).status_code == 200
    assert get(server_b, path, f"https://api.example.com{path}", issuer, headers=PROXY).status_code == 401


def test_uvicorn_proxy_headers_hide_the_proxy_from_us(server_b: str, issuer: TestIssuer) -> None:
    """With X-Forwarded-For, uvicorn replaces scope["client"] by the original client, so our trusted_proxies
    no longer see the proxy and X-Forwarded-Host is ignored (fail closed). Without it, we still see 127.0.0.1."""
    path = "/trusted/protected"
    with_xff = get(server_b, path, f"https://api.example.com{path}", issuer, headers=PROXY)
    assert with_xff.status_code == 401
    assert get(server_b, path, f"https://{server_b[7:]}{path}", issuer, headers=PROXY).status_code == 200
    no_xff = {k: v for k, v in PROXY.items() if k != "X-Forwarded-For"}
    assert get(server_b, path, f"https://api.example.com{path}", issuer, headers=no_xff).status_code == 200


@pytest.mark.parametrize("mount", ["trusted", "bare", "backend"])
@pytest.mark.parametrize("dots", ["..", "%2E%2E"])
def test_dot_segments_cannot_borrow_the_exempt_rule(server_b: str, mount: str, dots: str) -> None:
    """/health is exempt and Starlette routes /echo/../health to the echo catch-all: challenged.
    Sent raw (http.client): httpx would normalize the dots away before sending."""
    host, port = server_b.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", f"/{mount}/echo/{dots}/health")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401
        assert (resp.getheader("www-authenticate") or "").startswith("DPoP ")
    finally:
        conn.close()
    assert httpx.get(f"{server_b}/{mount}/health", timeout=10).status_code == 200


def test_lifespan_and_plain_requests_without_root_path(server_b: str, issuer: TestIssuer) -> None:
    for mount in MOUNTS:
        path = f"/{mount}/protected"
        assert get(server_b, path, server_b + path, issuer).status_code == 200, mount


def test_upgrade_request_without_websocket_support_is_still_verified(server_a: str) -> None:
    """An Upgrade request without credentials is refused with the HTTP challenge, whatever the WS library."""
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    resp = httpx.get(f"{server_a}/trusted/ws", headers=upgrade, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith('DPoP algs="')
