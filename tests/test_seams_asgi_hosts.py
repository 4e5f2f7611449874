"""Issue 19 §1.8: the Host header is not believed blindly by the Starlette/FastAPI adapters.

Two resource servers sharing an audience: a proof captured on ``other.test`` is replayed here with
``Host: other.test``. With ``allowed_hosts`` it is refused with ``400 invalid_request`` (never a 2xx);
a host that is allowed still works. With neither ``allowed_hosts`` nor ``public_url`` (and debug off)
each layer says so once, at construction. Starlette's ``TrustedHostMiddleware`` outside ours refuses
the same requests first, which is what the user guide calls equivalent.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPPrincipal, DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.starlette import DPoPAuthBackend, DPoPAuthenticationMiddleware, DPoPMiddleware, get_principal
from dpop_middleware.testing import TestIssuer, dpop_headers

LAYERS = ["middleware", "backend", "fastapi"]
UNPINNED = "no host is pinned"


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(audience="https://shared-audience.test")


async def me(request: Request) -> Response:
    principal = get_principal(request)
    return JSONResponse({"sub": principal.subject if principal else None})


def app(layer: str, verifier: DPoPVerifier, outer: list[Middleware] | None = None, **options: Any) -> Any:
    if layer == "fastapi":
        api = FastAPI(middleware=outer or [])
        dpop = DPoPBearer(verifier, **options)

        @api.get("/me")
        def read(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
            return {"sub": principal.subject}

        return api
    layer_middleware = (
        Middleware(DPoPMiddleware, verifier=verifier, **options)
        if layer == "middleware"
        else Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **options))
    )
    return Starlette(routes=[Route("/me", me)], middleware=[*(outer or []), layer_middleware])


def get(client: TestClient, issuer: TestIssuer, host: str) -> httpx.Response:
    key = DPoPKey.generate()
    headers = dpop_headers(key, "GET", f"http://{host}/me", issuer.token(key.jkt))
    return client.get(f"http://{host}/me", headers=headers)


@pytest.mark.parametrize("layer", LAYERS)
def test_a_host_that_is_not_allowed_is_a_400(issuer: TestIssuer, layer: str) -> None:
    asgi = app(layer, DPoPVerifier(issuer.validator()), allowed_hosts=["api.test", ".api.example"])
    with TestClient(asgi) as client:
        refused = get(client, issuer, "other.test")  # a proof made for other.test, replayed here
        assert refused.status_code == 400, refused.text
        assert 'error="invalid_request"' in refused.headers["www-authenticate"]
        body = refused.json()
        assert body.get("detail", body)["error"] == "invalid_request"  # FastAPI's handler: {"detail": ...}
        assert get(client, issuer, "api.test").status_code == 200
        assert get(client, issuer, "eu.api.example").status_code == 200
        assert get(client, issuer, "api.example:8443").status_code == 200


@pytest.mark.parametrize("layer", LAYERS)
def test_allowed_hosts_as_a_comma_separated_string(issuer: TestIssuer, layer: str) -> None:
    asgi = app(layer, DPoPVerifier(issuer.validator()), allowed_hosts="api.test, api2.test")
    with TestClient(asgi) as client:
        assert get(client, issuer, "other.test").status_code == 400
        assert get(client, issuer, "api2.test").status_code == 200


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_trusted_host_middleware_outside_ours_refuses_first(issuer: TestIssuer, layer: str) -> None:
    """The documented equivalent: TrustedHostMiddleware listed before ours answers first (its own 400)."""
    outer = [Middleware(TrustedHostMiddleware, allowed_hosts=["api.test"])]
    with TestClient(app(layer, DPoPVerifier(issuer.validator()), outer)) as client:
        refused = get(client, issuer, "other.test")
        assert refused.status_code == 400
        assert "www-authenticate" not in refused.headers  # never reached the DPoP layer
        assert get(client, issuer, "api.test").status_code == 200


def unpinned_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if UNPINNED in r.getMessage() and r.levelno == logging.WARNING]


@pytest.mark.parametrize("layer", LAYERS)
def test_unpinned_host_is_logged_once_at_construction(
    issuer: TestIssuer, layer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dpop_middleware")
    with TestClient(app(layer, DPoPVerifier(issuer.validator()))) as client:
        assert get(client, issuer, "api.test").status_code == 200
        assert get(client, issuer, "api.test").status_code == 200
    warnings = unpinned_warnings(caplog)
    assert len(warnings) == 1
    assert "allowed_hosts" in warnings[0].getMessage() and "public_url" in warnings[0].getMessage()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(
    "options",
    [{"allowed_hosts": ["api.test"]}, {"public_url": "https://api.test"}, {"debug": True}],
    ids=["allowed_hosts", "public_url", "debug"],
)
def test_no_warning_when_the_host_is_pinned_or_in_debug(
    issuer: TestIssuer, layer: str, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dpop_middleware")
    with TestClient(app(layer, DPoPVerifier(issuer.validator()), **options)):
        pass
    assert unpinned_warnings(caplog) == []


def test_no_warning_when_the_verifier_is_in_debug(issuer: TestIssuer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dpop_middleware")
    DPoPBearer(DPoPVerifier(issuer.validator(), debug=True))
    DPoPMiddleware(app("fastapi", DPoPVerifier(issuer.validator())), verifier=DPoPVerifier(issuer.validator(), debug=True))
    assert len(unpinned_warnings(caplog)) == 1  # the inner app's DPoPBearer only
