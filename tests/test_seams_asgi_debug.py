"""Issue 19 §3: an htu mismatch is diagnosable in debug, and only in debug.

``DPoPMiddleware``/``DPoPAuthBackend``/``DPoPBearer`` take ``debug`` (``None``: the verifier's own
``debug``, or the debug flag of the Starlette/FastAPI app serving the request). In debug the rejection's
body says what URL was expected and what the proof said; otherwise it is the production body, and
the challenge header never carries the details.
"""

from __future__ import annotations

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
from dpop_middleware.client import DPoPKey
from dpop_middleware.fastapi import DPoPBearer, DPoPHTTPException, dpop_exception_handler
from dpop_middleware.starlette import DPoPAuthBackend, DPoPAuthenticationMiddleware, DPoPMiddleware
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://api.test"
SIGNED_FOR = "https://public.example/me"
LAYERS = ["middleware", "backend", "fastapi"]
PRODUCTION_BODY = {"error": "invalid_dpop_proof", "error_description": "DPoP proof htu mismatch"}


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)


async def me(request: Request) -> Response:
    return JSONResponse({"ok": True})


def app(layer: str, verifier: DPoPVerifier, *, app_debug: bool = False, **options: Any) -> Any:
    if layer == "fastapi":
        api = FastAPI(debug=app_debug)
        api.add_exception_handler(DPoPHTTPException, dpop_exception_handler)
        dpop = DPoPBearer(verifier, **options)

        @api.get("/me")
        def read(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
            return {"ok": True}

        return api
    middleware = (
        Middleware(DPoPMiddleware, verifier=verifier, **options)
        if layer == "middleware"
        else Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **options))
    )
    return Starlette(debug=app_debug, routes=[Route("/me", me)], middleware=[middleware])


def mismatch(asgi: Any, issuer: TestIssuer) -> dict[str, Any]:
    key = DPoPKey.generate()
    with TestClient(asgi, base_url=BASE) as client:
        resp = client.get("/me", headers=dpop_headers(key, "GET", SIGNED_FOR, issuer.token(key.jkt)))
    assert resp.status_code == 401
    assert SIGNED_FOR not in resp.headers["www-authenticate"]  # details never in the challenge
    body: dict[str, Any] = resp.json()
    return body


def assert_debug_body(body: dict[str, Any]) -> None:
    assert body["dpop_debug"] == {"expected": BASE + "/me", "received": SIGNED_FOR}
    assert SIGNED_FOR in body["error_description"] and BASE + "/me" in body["error_description"]


@pytest.mark.parametrize("layer", LAYERS)
def test_debug_option_says_expected_and_received(issuer: TestIssuer, layer: str) -> None:
    assert_debug_body(mismatch(app(layer, DPoPVerifier(issuer.validator()), debug=True), issuer))


@pytest.mark.parametrize("layer", LAYERS)
def test_production_says_nothing_more(issuer: TestIssuer, layer: str) -> None:
    assert mismatch(app(layer, DPoPVerifier(issuer.validator())), issuer) == PRODUCTION_BODY


@pytest.mark.parametrize("layer", LAYERS)
def test_debug_none_follows_the_verifier(issuer: TestIssuer, layer: str) -> None:
    assert_debug_body(mismatch(app(layer, DPoPVerifier(issuer.validator(), debug=True)), issuer))


@pytest.mark.parametrize("layer", LAYERS)
def test_explicit_debug_false_wins_over_the_verifier(issuer: TestIssuer, layer: str) -> None:
    verifier = DPoPVerifier(issuer.validator(), debug=True)
    assert mismatch(app(layer, verifier, debug=False), issuer) == PRODUCTION_BODY


@pytest.mark.parametrize("layer", LAYERS)
def test_debug_none_follows_the_starlette_app(issuer: TestIssuer, layer: str) -> None:
    assert_debug_body(mismatch(app(layer, DPoPVerifier(issuer.validator()), app_debug=True), issuer))
    verifier = DPoPVerifier(issuer.validator())
    assert mismatch(app(layer, verifier, app_debug=True, debug=False), issuer) == PRODUCTION_BODY


def test_debug_without_the_verbatim_handler_lands_in_detail(issuer: TestIssuer) -> None:
    """FastAPI's own handler wraps the core body in {"detail": ...}: the diagnostics are there too."""
    api = FastAPI()
    dpop = DPoPBearer(DPoPVerifier(issuer.validator()), debug=True)

    @api.get("/me")
    def read(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"ok": True}

    assert_debug_body(mismatch(api, issuer)["detail"])
