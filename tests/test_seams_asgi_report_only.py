"""Issue 19 §2: ``report_only`` through Starlette and FastAPI never crashes our code.

In ``report_only`` nothing is refused: the FastAPI dependency hands ``None`` to the endpoint and a
Starlette endpoint finds ``scope["dpop"]`` set to ``None``, whatever went wrong, including a request
whose URL cannot even be rebuilt (which used to leave ``scope["dpop"]`` unset: a ``KeyError`` in an
endpoint reading ``request.scope["dpop"]``). The verifier warns once at construction. The existing
authentication stays in front during the shadow phase (docs/starlette-fastapi.md): pinned here with
a stand-in for it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgi_support import call_asgi, http_scope
from fastapi import Depends, FastAPI, HTTPException, Security
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser, requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
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


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)


def shadow(issuer: TestIssuer) -> DPoPVerifier:
    return DPoPVerifier(issuer.validator(), mode="report_only")


def bad_requests(issuer: TestIssuer) -> list[dict[str, str]]:
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    return [
        {},  # no credentials
        {"Authorization": f"Bearer {token}"},  # a bound token downgraded to Bearer
        dpop_headers(key, "GET", "http://elsewhere.test/me", token),  # htu mismatch
        {"Authorization": "DPoP x", "DPoP": "not-a-jwt"},
    ]


# -- FastAPI --------------------------------------------------------------------------------------


def fastapi_app(verifier: DPoPVerifier) -> FastAPI:
    api = FastAPI()
    dpop = DPoPBearer(verifier)

    @api.get("/me")
    def me(principal: DPoPPrincipal | None = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject if principal else None}

    @api.get("/admin")
    def admin(principal: DPoPPrincipal | None = Security(dpop, scopes=["admin"])) -> dict[str, Any]:
        return {"sub": principal.subject if principal else None}

    return api


def test_fastapi_dependency_gives_none_and_never_refuses(issuer: TestIssuer) -> None:
    with TestClient(fastapi_app(shadow(issuer)), base_url=BASE) as client:
        for headers in bad_requests(issuer):
            for path in ("/me", "/admin"):
                resp = client.get(path, headers=headers)
                assert resp.status_code == 200, (path, headers, resp.text)
                assert resp.json() == {"sub": None}
        key = DPoPKey.generate()
        good = dpop_headers(key, "GET", BASE + "/me", issuer.token(key.jkt))
        assert client.get("/me", headers=good).json() == {"sub": "alice"}


def test_existing_auth_in_front_of_the_shadow_dependency(issuer: TestIssuer) -> None:
    """The rollout pattern of the guide: the endpoint depends on the existing auth *and* on DPoPBearer."""
    dpop = DPoPBearer(shadow(issuer))

    def existing_auth(request: Request) -> str:
        if request.headers.get("x-api-key") != "s3cret":
            raise HTTPException(401, "existing auth says no")
        return "user-1"

    api = FastAPI()

    @api.get("/me")
    def me(user: str = Depends(existing_auth), principal: DPoPPrincipal | None = Depends(dpop)) -> dict[str, Any]:
        return {"user": user, "dpop": principal.subject if principal else None}

    with TestClient(api, base_url=BASE) as client:
        assert client.get("/me").status_code == 401  # the existing auth still decides
        assert client.get("/me", headers={"X-API-Key": "s3cret"}).json() == {"user": "user-1", "dpop": None}


# -- Starlette ------------------------------------------------------------------------------------


async def me(request: Request) -> Response:
    principal = request.scope["dpop"]  # what a user writes; present (None) whatever happened
    return JSONResponse({"sub": principal.subject if principal else None})


@requires_scopes("admin")
async def admin(request: Request) -> Response:
    return JSONResponse({"admin": True})


def starlette_app(layer: str, verifier: DPoPVerifier) -> Starlette:
    middleware = (
        Middleware(DPoPMiddleware, verifier=verifier)
        if layer == "middleware"
        else Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier))
    )
    return Starlette(routes=[Route("/me", me), Route("/admin", admin)], middleware=[middleware])


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_starlette_endpoints_run_with_scope_dpop_none(issuer: TestIssuer, layer: str) -> None:
    with TestClient(starlette_app(layer, shadow(issuer)), base_url=BASE) as client:
        for headers in bad_requests(issuer):
            assert client.get("/me", headers=headers).json() == {"sub": None}
            assert client.get("/admin", headers=headers).json() == {"admin": True}


@pytest.mark.parametrize("layer", ["middleware", "backend"])
async def test_untranslatable_request_still_sets_scope_dpop(issuer: TestIssuer, layer: str) -> None:
    """A path that cannot be percent-encoded is reported, not refused: scope["dpop"] must still be there."""
    app = starlette_app(layer, shadow(issuer))
    # Starlette routes on "path"; the URL is rebuilt from root_path too: a lone surrogate there cannot be encoded.
    scope = http_scope(
        "/me", raw_path=b"/me", app_root_path="/\ud800", client=("203.0.113.9", 1), server=("api.test", 80)
    )
    sent = await call_asgi(app, scope)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"sub":null}'


@pytest.mark.parametrize("kind", ["bearer", "middleware"])
def test_report_only_warns_once_at_start_up(issuer: TestIssuer, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dpop_middleware")
    verifier = shadow(issuer)
    with TestClient(fastapi_app(verifier) if kind == "bearer" else starlette_app("middleware", verifier)) as client:
        client.get("/me")
        client.get("/me")
    messages = [r.getMessage() for r in caplog.records if "report_only" in r.getMessage()]
    assert len([m for m in messages if "no request is refused" in m]) == 1


class ExistingBackend(AuthenticationBackend):
    """Stands in for the authentication an API has before DPoP: an API key."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if conn.headers.get("x-api-key") != "s3cret":
            return None
        return AuthCredentials(["authenticated"]), SimpleUser("user-1")


@requires("authenticated")
async def existing_me(request: Request) -> Response:
    principal = get_principal(request)
    return JSONResponse({"user": request.user.display_name, "dpop": principal.subject if principal else None})


def test_existing_auth_in_front_of_the_shadow_middleware(issuer: TestIssuer) -> None:
    """The Starlette rollout pattern of the guide: AuthenticationMiddleware(existing) + DPoPMiddleware."""
    app = Starlette(
        routes=[Route("/me", existing_me)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=ExistingBackend()),
            Middleware(DPoPMiddleware, verifier=shadow(issuer)),
        ],
    )
    key = DPoPKey.generate()
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/me").status_code == 403  # Starlette's requires: the existing auth still decides
        assert client.get("/me", headers={"X-API-Key": "s3cret"}).json() == {"user": "user-1", "dpop": None}
        signed = dpop_headers(key, "GET", BASE + "/me", issuer.token(key.jkt))
        both = client.get("/me", headers={"X-API-Key": "s3cret", **signed})
        assert both.json() == {"user": "user-1", "dpop": "alice"}
