"""Starlette regressions from the security review: path rules vs. the router, trusted forwarding headers.

Both DPoP layers are covered: :class:`DPoPMiddleware` and :class:`DPoPAuthBackend` (behind
:class:`DPoPAuthenticationMiddleware`). A literal ``..`` never survives httpx (it normalizes the URL
before sending), so those requests are driven as raw ASGI scopes, which is what uvicorn hands over;
``%2E%2E`` goes through Starlette's ``TestClient``.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgi_support import call_asgi, http_scope
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.starlette import DPoPAuthBackend, DPoPAuthenticationMiddleware, DPoPMiddleware, get_principal
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.verifier import Outcome

BASE = "http://api.test"
LAYERS = ["middleware", "backend"]


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)



async def admin(request: Request) -> Response:
    principal = get_principal(request)
    return JSONResponse({"admin": True, "scopes": sorted(principal.scopes) if principal else None})


async def public(request: Request) -> Response:
    return JSONResponse({"public": True})


def app(layer: str, verifier: DPoPVerifier, **options: Any) -> Starlette:
    """``/public`` exempt, and a catch-all ``/admin/{rest:path}`` that routes dot segments literally."""
    middleware = (
        Middleware(DPoPMiddleware, verifier=verifier, **options)
        if layer == "middleware"
        else Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **options))
    )
    routes = [Route("/public", public), Route("/admin/{rest:path}", admin)]
    return Starlette(routes=routes, middleware=[middleware])


async def raw_get(asgi: Any, path: str, raw_path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    scope = http_scope(path, raw_path=raw_path.encode(), headers=list((headers or {}).items()), server=("api.test", 80))
    sent = await call_asgi(asgi, scope)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


# -- path rules see what the router routes --------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
async def test_literal_dot_segments_cannot_borrow_an_exempt_rule(issuer: TestIssuer, layer: str) -> None:
    asgi = app(layer, DPoPVerifier(issuer.validator()), exempt_paths=["/public"])
    # Starlette routes /admin/../public to admin(): the exempt rule for /public must not apply.
    status, body = await raw_get(asgi, "/admin/../public", "/admin/../public")
    assert status == 401, body
    assert (await raw_get(asgi, "/public", "/public"))[0] == 200


@pytest.mark.parametrize("layer", LAYERS)
def test_encoded_dot_segments_cannot_borrow_an_exempt_rule(issuer: TestIssuer, layer: str) -> None:
    client = TestClient(app(layer, DPoPVerifier(issuer.validator()), exempt_paths=["/public"]), base_url=BASE)
    resp = client.get("/admin/%2E%2E/public")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("DPoP ")
    assert client.get("/admin/x").status_code == 401
    assert client.get("/public").status_code == 200


@pytest.mark.parametrize("layer", LAYERS)
def test_dot_segments_cannot_shed_a_path_scope(issuer: TestIssuer, key: DPoPKey, layer: str) -> None:
    client = TestClient(app(layer, DPoPVerifier(issuer.validator()), path_scopes={"/admin": "admin"}), base_url=BASE)
    token = issuer.token(key.jkt, scope="read")
    for path in ("/admin/users", "/admin/x/%2E%2E/%2E%2E/users"):
        resp = client.get(path, headers=dpop_headers(key, "GET", BASE + path, token))
        assert resp.status_code == 403, path
        assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
    admin_token = issuer.token(key.jkt, scope="read admin")
    path = "/admin/x/%2E%2E/%2E%2E/users"
    resp = client.get(path, headers=dpop_headers(key, "GET", BASE + path, admin_token))
    assert resp.status_code == 200 and resp.json()["admin"] is True


# -- only the configured forwarding headers are believed ------------------------------------------

PROXY = ("10.0.0.0/8",)


def proxied(issuer: TestIssuer, key: DPoPKey, signed_url: str, sent: dict[str, str]) -> dict[str, str]:
    return {**dpop_headers(key, "GET", signed_url, issuer.token(key.jkt)), **sent}


@pytest.mark.parametrize("layer", LAYERS)
def test_a_passed_through_forwarding_header_is_ignored(issuer: TestIssuer, key: DPoPKey, layer: str) -> None:
    """The proxy (trusted) sets X-Forwarded-Proto only; the client's X-Forwarded-Host passes through."""
    asgi = app(layer, DPoPVerifier(issuer.validator()), trusted_proxies=PROXY)
    client = TestClient(asgi, base_url=BASE, client=("10.0.0.7", 1234))
    sent = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"}
    spoofed = client.get("/admin/x", headers=proxied(issuer, key, "https://evil.test/admin/x", sent))
    assert spoofed.status_code == 401
    honest = client.get("/admin/x", headers=proxied(issuer, key, "https://api.test/admin/x", sent))
    assert honest.status_code == 200, honest.text


@pytest.mark.parametrize("layer", LAYERS)
def test_opted_in_forwarding_headers_are_believed(issuer: TestIssuer, key: DPoPKey, layer: str) -> None:
    verifier = DPoPVerifier(issuer.validator())
    asgi = app(layer, verifier, trusted_proxies=PROXY, trusted_headers=["X-Forwarded-Proto", "X-Forwarded-Host"])
    client = TestClient(asgi, base_url=BASE, client=("10.0.0.7", 1234))
    sent = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.test", "X-Forwarded-Prefix": "/edge"}
    ok = client.get("/admin/x", headers=proxied(issuer, key, "https://public.test/admin/x", sent))
    assert ok.status_code == 200, ok.text
    # X-Forwarded-Prefix was not opted in: a proof naming it does not match.
    prefixed = client.get("/admin/x", headers=proxied(issuer, key, "https://public.test/edge/admin/x", sent))
    assert prefixed.status_code == 401


def test_unknown_trusted_header_is_a_configuration_error(issuer: TestIssuer) -> None:
    with pytest.raises(ValueError, match="unknown forwarding headers"):
        DPoPMiddleware(public, verifier=DPoPVerifier(issuer.validator()), trusted_headers=["X-Real-IP"])
    with pytest.raises(ValueError, match="unknown forwarding headers"):
        DPoPAuthBackend(DPoPVerifier(issuer.validator()), trusted_headers="X-Real-IP")


async def test_untranslatable_scope_is_a_400_not_a_500(issuer: TestIssuer) -> None:
    asgi = app("middleware", DPoPVerifier(issuer.validator()))
    scope_path = "/admin/\ud800"  # a lone surrogate cannot be percent-encoded
    sent = await call_asgi(asgi, http_scope(scope_path, client=("203.0.113.9", 1), server=None))
    assert sent[0]["status"] == 400
    assert b"invalid_request" in dict(sent[0]["headers"])[b"www-authenticate"]


@pytest.mark.parametrize("layer", LAYERS)
def test_a_path_scope_failure_is_one_outcome(issuer: TestIssuer, key: DPoPKey, layer: str) -> None:
    outcomes: list[Outcome] = []
    verifier = DPoPVerifier(issuer.validator(), on_outcome=outcomes.append)
    client = TestClient(app(layer, verifier, path_scopes={"/admin": "admin"}), base_url=BASE)
    token = issuer.token(key.jkt, scope="read")
    assert client.get("/admin/x", headers=dpop_headers(key, "GET", BASE + "/admin/x", token)).status_code == 403
    assert [o.outcome for o in outcomes] == ["rejected"]
