"""Issue 19 §2 seams: what an endpoint may conclude from ``scope["dpop"]``.

* ``require_principal(request)``: the principal, or an exact refusal: 401 with the challenge when the
  DPoP layer ran and the request is anonymous (optional path, a preflight, report_only), 503 and an
  ERROR naming the fix when no DPoP layer ran or the path is exempt (a deployment mistake that a
  ``scope["dpop"]`` of ``None`` would hide).
* A ``DPoPBearer`` route behind ``DPoPMiddleware`` in an app where something strips ``scope["dpop"]``
  fails closed: the dependency verifies again and sees the proof replayed (401), never a 2xx without
  a principal, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPPrincipal, DPoPVerifier
from dpop_middleware.asgi import ASGIApp, Receive, Scope, Send
from dpop_middleware.client import DPoPKey
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.starlette import DPoPAuthBackend, DPoPAuthenticationMiddleware, DPoPMiddleware, require_principal
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://api.test"


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)


def signed(issuer: TestIssuer, path: str, method: str = "GET") -> dict[str, str]:
    key = DPoPKey.generate()
    return dpop_headers(key, method, BASE + path, issuer.token(key.jkt))


async def whoami(request: Request) -> Response:
    return JSONResponse({"sub": require_principal(request).subject})


ROUTES = [Route(path, whoami) for path in ("/me", "/optional/me", "/health/me")]
PATHS = {"exempt_paths": ["/health"], "optional_paths": ["/optional"]}


def layered(layer: str, verifier: DPoPVerifier, **options: Any) -> Starlette:
    middleware = (
        Middleware(DPoPMiddleware, verifier=verifier, **PATHS, **options)
        if layer == "middleware"
        else Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **PATHS, **options))
    )
    return Starlette(routes=ROUTES, middleware=[middleware])


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_require_principal_returns_the_verified_principal(issuer: TestIssuer, layer: str) -> None:
    with TestClient(layered(layer, DPoPVerifier(issuer.validator())), base_url=BASE) as client:
        assert client.get("/me", headers=signed(issuer, "/me")).json() == {"sub": "alice"}
        assert client.get("/optional/me", headers=signed(issuer, "/optional/me")).json() == {"sub": "alice"}


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_require_principal_on_an_anonymous_optional_request_is_the_challenge(issuer: TestIssuer, layer: str) -> None:
    with TestClient(layered(layer, DPoPVerifier(issuer.validator())), base_url=BASE) as client:
        resp = client.get("/optional/me")
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith('DPoP algs="')
        assert resp.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_require_principal_on_an_exempt_path_is_a_503_naming_the_setting(
    issuer: TestIssuer, layer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dpop_middleware")
    with TestClient(layered(layer, DPoPVerifier(issuer.validator())), base_url=BASE) as client:
        resp = client.get("/health/me", headers=signed(issuer, "/health/me"))
    assert resp.status_code == 503
    assert "www-authenticate" not in resp.headers
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("exempt_paths" in message and "/health/me" in message for message in errors), errors


def test_require_principal_without_any_dpop_layer_is_a_503_naming_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dpop_middleware")
    with TestClient(Starlette(routes=ROUTES), base_url=BASE) as client:
        resp = client.get("/me", headers={"Authorization": "DPoP forged", "DPoP": "x"})
    assert resp.status_code == 503
    assert any("DPoPMiddleware" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_require_principal_in_report_only_still_refuses_an_anonymous_request(issuer: TestIssuer) -> None:
    """report_only refuses nothing by itself; an endpoint that cannot run without a principal must not run."""
    verifier = DPoPVerifier(issuer.validator(), mode="report_only")
    with TestClient(layered("middleware", verifier), base_url=BASE) as client:
        assert client.get("/me").status_code == 401
        assert client.get("/me", headers=signed(issuer, "/me")).json() == {"sub": "alice"}


# -- something strips scope["dpop"] between DPoPMiddleware and a DPoPBearer route ------------------


def stripping(keys: tuple[str, ...]) -> type:
    class Strip:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            copy = {k: v for k, v in scope.items() if k not in keys}
            await self.app(copy, receive, send)

    return Strip


@pytest.mark.parametrize(
    "keys",
    [("dpop",), ("dpop", "dpop.verifier", "dpop.request_info", "dpop.response_headers")],
    ids=["principal", "every-dpop-key"],
)
def test_bearer_route_behind_a_layer_whose_principal_was_stripped_fails_closed(
    issuer: TestIssuer, keys: tuple[str, ...]
) -> None:
    verifier = DPoPVerifier(issuer.validator())
    api = FastAPI()
    dpop = DPoPBearer(verifier)

    @api.get("/me")
    def me(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject}

    api.add_middleware(stripping(keys))
    api.add_middleware(DPoPMiddleware, verifier=verifier)  # outermost
    with TestClient(api, base_url=BASE) as client:
        resp = client.get("/me", headers=signed(issuer, "/me"))
        # The middleware accepted (and consumed) the proof; the dependency cannot see that: replay.
        assert resp.status_code == 401
        assert 'error="invalid_dpop_proof"' in resp.headers["www-authenticate"]
        assert client.get("/me").status_code == 401
