"""FastAPI regressions from the security review.

* ``DPoPBearer`` used twice on one request (router dependency + ``Security(scopes=...)``, or
  behind ``DPoPMiddleware``) verifies the proof once: the second check reuses the principal and
  only adds its scopes, instead of failing as a replay.
* Path rules of ``DPoPMiddleware`` in a FastAPI app see the path as FastAPI routes it.
* ``trusted_headers`` and the 400 for an untranslatable request reach ``DPoPBearer`` too.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgi_support import call_asgi, http_scope
from fastapi import APIRouter, Depends, FastAPI, Security
from starlette.testclient import TestClient

from dpop_middleware import DPoPPrincipal, DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.starlette import DPoPMiddleware
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.verifier import Outcome

BASE = "http://api.test"


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)



def signed(issuer: TestIssuer, key: DPoPKey, path: str, method: str = "GET", scope: str = "read") -> dict[str, str]:
    return dpop_headers(key, method, BASE + path, issuer.token(key.jkt, scope=scope))


def recording_verifier(issuer: TestIssuer, outcomes: list[Outcome]) -> DPoPVerifier:
    return DPoPVerifier(issuer.validator(), on_outcome=outcomes.append)


def doubled_app(dpop: DPoPBearer) -> FastAPI:
    """A router that authenticates every route, and endpoints that authenticate (with scopes) again."""
    router = APIRouter(dependencies=[Depends(dpop)])

    @router.post("/items")
    def create(principal: DPoPPrincipal = Security(dpop, scopes=["read"])) -> dict[str, Any]:
        return {"sub": principal.subject}

    @router.get("/admin")
    def admin(principal: DPoPPrincipal = Security(dpop, scopes=["admin"])) -> dict[str, Any]:
        return {"sub": principal.subject}

    @router.get("/plain")
    def plain(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject}

    app = FastAPI()
    app.include_router(router)
    return app


def test_router_dependency_plus_security_scopes_verifies_once(issuer: TestIssuer, key: DPoPKey) -> None:
    outcomes: list[Outcome] = []
    client = TestClient(doubled_app(DPoPBearer(recording_verifier(issuer, outcomes))), base_url=BASE)
    resp = client.post("/items", headers=signed(issuer, key, "/items", "POST"))
    assert resp.status_code == 200, resp.text
    assert [o.outcome for o in outcomes] == ["accepted"]  # one verification, one outcome
    assert client.get("/plain", headers=signed(issuer, key, "/plain")).status_code == 200


def test_reused_principal_still_needs_the_extra_scopes(issuer: TestIssuer, key: DPoPKey) -> None:
    client = TestClient(doubled_app(DPoPBearer(DPoPVerifier(issuer.validator()))), base_url=BASE)
    denied = client.get("/admin", headers=signed(issuer, key, "/admin"))
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    granted = client.get("/admin", headers=signed(issuer, key, "/admin", scope="read admin"))
    assert granted.status_code == 200
    assert client.get("/admin").status_code == 401  # no credentials: the router's check answers


def middleware_app(middleware_verifier: DPoPVerifier, dpop: DPoPBearer, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    def me(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject}

    @app.get("/admin")
    def admin(principal: DPoPPrincipal = Security(dpop, scopes=["admin"])) -> dict[str, Any]:
        return {"sub": principal.subject}

    @app.get("/health")
    def health(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject}

    app.add_middleware(DPoPMiddleware, verifier=middleware_verifier, **options)
    return app


def test_middleware_in_front_of_the_dependency_verifies_once(issuer: TestIssuer, key: DPoPKey) -> None:
    outcomes: list[Outcome] = []
    verifier = recording_verifier(issuer, outcomes)
    client = TestClient(middleware_app(verifier, DPoPBearer(verifier)), base_url=BASE)
    resp = client.get("/me", headers=signed(issuer, key, "/me"))
    assert resp.status_code == 200, resp.text
    assert [o.outcome for o in outcomes] == ["accepted"]
    assert client.get("/admin", headers=signed(issuer, key, "/admin")).status_code == 403
    assert client.get("/admin", headers=signed(issuer, key, "/admin", scope="admin")).status_code == 200


def test_dependency_still_checks_what_the_middleware_let_through(issuer: TestIssuer, key: DPoPKey) -> None:
    """An exempt or optional path in the middleware leaves nothing to reuse: the dependency decides."""
    verifier = DPoPVerifier(issuer.validator())
    app = middleware_app(verifier, DPoPBearer(verifier), exempt_paths=["/health"], optional_paths=["/me"])
    client = TestClient(app, base_url=BASE)
    assert client.get("/health").status_code == 401
    assert client.get("/me").status_code == 401
    assert client.get("/health", headers=signed(issuer, key, "/health")).status_code == 200
    assert client.get("/me", headers=signed(issuer, key, "/me")).status_code == 200


def test_a_principal_from_another_verifier_is_not_reused(issuer: TestIssuer, key: DPoPKey) -> None:
    other_issuer = TestIssuer(issuer="https://other-as.test", audience=BASE)
    app = middleware_app(DPoPVerifier(other_issuer.validator()), DPoPBearer(DPoPVerifier(issuer.validator())))
    client = TestClient(app, base_url=BASE)
    token = other_issuer.token(key.jkt, scope="admin")
    resp = client.get("/me", headers=dpop_headers(key, "GET", BASE + "/me", token))
    assert resp.status_code == 401  # the middleware accepted it; our verifier does not know that issuer
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


# -- path rules in a FastAPI app ------------------------------------------------------------------


def routed_app(verifier: DPoPVerifier, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"public": True}

    @app.get("/admin/{rest:path}")
    def admin(rest: str) -> dict[str, Any]:
        return {"admin": True, "rest": rest}

    app.add_middleware(DPoPMiddleware, verifier=verifier, **options)
    return app


async def raw(app: Any, scope_path: str, raw_path: bytes | None) -> int:
    scope = http_scope(scope_path, raw_path=raw_path, client=("203.0.113.9", 1), server=("api.test", 80))
    sent = await call_asgi(app, scope)
    if sent[0]["status"] == 400:
        assert b"invalid_request" in sent[1]["body"]
    return int(sent[0]["status"])


async def test_dot_segments_cannot_borrow_an_exempt_rule(issuer: TestIssuer) -> None:
    app = routed_app(DPoPVerifier(issuer.validator()), exempt_paths=["/public"])
    assert await raw(app, "/admin/../public", b"/admin/../public") == 401
    assert await raw(app, "/public", b"/public") == 200
    assert TestClient(app, base_url=BASE).get("/admin/%2E%2E/public").status_code == 401


def test_dot_segments_cannot_shed_a_path_scope(issuer: TestIssuer, key: DPoPKey) -> None:
    client = TestClient(routed_app(DPoPVerifier(issuer.validator()), path_scopes={"/admin": "admin"}), base_url=BASE)
    path = "/admin/x/%2E%2E/%2E%2E/users"
    resp = client.get(path, headers=signed(issuer, key, path))
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]


# -- proxies and untranslatable requests reach the dependency -------------------------------------


def bearer_app(dpop: DPoPBearer) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    def me(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject}

    return app


def test_dependency_believes_only_the_trusted_headers(issuer: TestIssuer, key: DPoPKey) -> None:
    sent = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.test"}
    token = issuer.token(key.jkt)

    def get(dpop: DPoPBearer, signed_url: str) -> int:
        client = TestClient(bearer_app(dpop), base_url=BASE, client=("10.0.0.7", 1))
        return client.get("/me", headers={**dpop_headers(key, "GET", signed_url, token), **sent}).status_code

    default = DPoPBearer(DPoPVerifier(issuer.validator()), trusted_proxies="10.0.0.0/8")
    assert get(default, "https://public.test/me") == 401  # a passed-through X-Forwarded-Host is ignored
    assert get(default, "https://api.test/me") == 200
    opted_in = DPoPBearer(
        DPoPVerifier(issuer.validator()),
        trusted_proxies="10.0.0.0/8",
        trusted_headers=["x-forwarded-proto", "x-forwarded-host"],
    )
    assert get(opted_in, "https://public.test/me") == 200


async def test_untranslatable_request_is_a_400_not_a_500(issuer: TestIssuer) -> None:
    dpop = DPoPBearer(DPoPVerifier(issuer.validator()))
    app = FastAPI()

    @app.get("/{anything:path}")
    def anything(anything: str, principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {}

    assert await raw(app, "/me", None) == 401
    # A lone surrogate in the decoded path cannot be percent-encoded to rebuild the URL.
    assert await raw(app, "/\ud800", None) == 400
