"""Issue 19 §2: a CORS preflight is never challenged, even with the DPoP layer outside CORSMiddleware.

Browsers send a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) without
credentials; a 401 there breaks the real request. The preflight must reach Starlette's
``CORSMiddleware`` placed *inside* our layer and get its 200 with the allow headers. It carries no
principal: an endpoint that handles ``OPTIONS`` itself still cannot use it to pass a scope check.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPPrincipal, DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.starlette import (
    DPoPAuthBackend,
    DPoPAuthenticationMiddleware,
    DPoPMiddleware,
    get_principal,
    requires_scopes,
)
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://api.test"
ORIGIN = "https://app.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, dpop"}
CORS = Middleware(
    CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["GET", "POST"], allow_headers=["Authorization", "DPoP"]
)


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)


async def items(request: Request) -> Response:
    principal = get_principal(request)
    return JSONResponse({"sub": principal.subject if principal else None})


@requires_scopes("admin")
async def admin(request: Request) -> Response:
    return JSONResponse({"admin": True})


def dpop_layer(layer: str, verifier: DPoPVerifier) -> Middleware:
    if layer == "middleware":
        return Middleware(DPoPMiddleware, verifier=verifier)
    return Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier))


def starlette_app(layer: str, verifier: DPoPVerifier, *, cors: bool = True) -> Starlette:
    # Starlette's list runs outermost first: ours is *outside* CORSMiddleware here.
    routes = [Route("/items", items, methods=["GET", "POST"]), Route("/admin", admin, methods=["GET", "OPTIONS"])]
    return Starlette(routes=routes, middleware=[dpop_layer(layer, verifier), *([CORS] if cors else [])])


def fastapi_app(verifier: DPoPVerifier) -> FastAPI:
    api = FastAPI()
    dpop = DPoPBearer(verifier)

    @api.post("/items")
    def create(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject}

    api.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["POST"], allow_headers=["Authorization", "DPoP"])
    api.add_middleware(DPoPMiddleware, verifier=verifier)  # added last: outermost, outside CORS
    return api


def assert_cors_preflight_answer(resp: Any) -> None:
    assert resp.status_code == 200, resp.text
    assert "www-authenticate" not in resp.headers
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in resp.headers["access-control-allow-methods"]
    allowed = resp.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "dpop" in allowed


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_preflight_reaches_cors_inside_the_dpop_layer(issuer: TestIssuer, layer: str) -> None:
    with TestClient(starlette_app(layer, DPoPVerifier(issuer.validator())), base_url=BASE) as client:
        assert_cors_preflight_answer(client.options("/items", headers=PREFLIGHT))
        # The real request still needs credentials, and gets them checked.
        assert client.post("/items", headers={"Origin": ORIGIN}).status_code == 401
        key = DPoPKey.generate()
        signed = dpop_headers(key, "POST", BASE + "/items", issuer.token(key.jkt))
        assert client.post("/items", headers={"Origin": ORIGIN, **signed}).json() == {"sub": "alice"}


def test_preflight_with_dpop_middleware_around_fastapi(issuer: TestIssuer) -> None:
    with TestClient(fastapi_app(DPoPVerifier(issuer.validator())), base_url=BASE) as client:
        assert_cors_preflight_answer(client.options("/items", headers=PREFLIGHT))
        assert client.post("/items", headers={"Origin": ORIGIN}).status_code == 401


@pytest.mark.parametrize("layer", ["middleware", "backend"])
@pytest.mark.parametrize(
    "headers",
    [{"Origin": ORIGIN}, {"Access-Control-Request-Method": "POST"}, {}],
    ids=["origin-only", "request-method-only", "bare"],
)
def test_an_options_request_that_is_no_preflight_is_still_challenged(
    issuer: TestIssuer, layer: str, headers: dict[str, str]
) -> None:
    with TestClient(starlette_app(layer, DPoPVerifier(issuer.validator()), cors=False), base_url=BASE) as client:
        resp = client.options("/admin", headers=headers)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("DPoP algs=")


def test_a_preflight_carries_no_principal_past_a_scope_check(issuer: TestIssuer) -> None:
    """Without a CORS layer the preflight reaches an endpoint that takes OPTIONS: it is anonymous (403)
    under the authentication backend (which cannot see the response)."""
    with TestClient(starlette_app("backend", DPoPVerifier(issuer.validator()), cors=False), base_url=BASE) as client:
        resp = client.options("/admin", headers=PREFLIGHT)
        assert resp.status_code == 403
        assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]


def test_a_preflight_without_a_cors_answer_reads_nothing_through_the_middleware(issuer: TestIssuer) -> None:
    """The middleware lets a preflight reach the app only for a CORS layer to answer it: any other
    answer (here the endpoint's own) is replaced by an empty 200."""
    with TestClient(starlette_app("middleware", DPoPVerifier(issuer.validator()), cors=False), base_url=BASE) as client:
        resp = client.options("/admin", headers=PREFLIGHT)
        assert resp.status_code == 200
        assert resp.content == b""
        assert "www-authenticate" not in resp.headers
