"""Issue 19 for DPoPWSGIMiddleware: allowed hosts (§1.8), the unpinned-host warning, CORS preflights (§2)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from werkzeug.test import Client
from wsgi_app_support import bare_app

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.wsgi import DPoPWSGIMiddleware

WARNING_NAMES = "public_url= or allowed_hosts="
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}




def middleware(issuer: TestIssuer, *, debug: bool = False, **options: Any) -> DPoPWSGIMiddleware:
    return DPoPWSGIMiddleware(bare_app, DPoPVerifier(issuer.validator(), debug=debug), **options)


def get_as(app: DPoPWSGIMiddleware, issuer: TestIssuer, key: DPoPKey, host: str, **kw: Any) -> Any:
    headers = dict(dpop_headers(key, "GET", f"http://{host}/items", issuer.token(key.jkt)), Host=host)
    headers.update(kw.pop("headers", {}))
    return Client(app).get("/items", headers=headers, **kw)


@pytest.mark.parametrize("allowed", [["api.example.com", ".internal.example"], "api.example.com,.internal.example"])
def test_allowed_hosts_pins_the_host(issuer: TestIssuer, key: DPoPKey, allowed: Any) -> None:
    app = middleware(issuer, allowed_hosts=allowed)
    assert get_as(app, issuer, key, "api.example.com").status_code == 200
    assert get_as(app, issuer, key, "svc.internal.example:8080").status_code == 200
    resp = get_as(app, issuer, key, "other-api.example.com")
    assert resp.status_code == 400
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


def test_allowed_hosts_checks_a_forwarded_host(issuer: TestIssuer, key: DPoPKey) -> None:
    app = middleware(
        issuer, allowed_hosts=["api.example.com"], trusted_proxies="127.0.0.1", trusted_headers="X-Forwarded-Host"
    )
    forwarded = {"X-Forwarded-Host": "other-api.example.com"}
    resp = get_as(app, issuer, key, "other-api.example.com", headers=forwarded)
    assert resp.status_code == 400


def test_hostile_allowed_hosts_is_refused_at_construction(issuer: TestIssuer) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        middleware(issuer, allowed_hosts=[1])


@pytest.mark.parametrize(
    ("options", "debug", "warns"),
    [
        ({}, False, True),
        ({}, True, False),
        ({"public_url": "https://api.example.com"}, False, False),
        ({"allowed_hosts": ["api.example.com"]}, False, False),
    ],
)
def test_unpinned_host_warns_once_at_construction(
    issuer: TestIssuer,
    key: DPoPKey,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    debug: bool,
    warns: bool,
) -> None:
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        app = middleware(issuer, debug=debug, **options)
        get_as(app, issuer, key, "localhost")
        get_as(app, issuer, key, "localhost")
    said = [r for r in caplog.records if r.levelno == logging.WARNING and WARNING_NAMES in r.getMessage()]
    assert len(said) == (1 if warns else 0)


def test_cors_preflight_reaches_the_app_unchallenged_but_reads_nothing(issuer: TestIssuer) -> None:
    app = middleware(issuer, allowed_hosts="localhost", path_scopes={"/items": "items:write"})
    resp = Client(app).options("/items", headers=PREFLIGHT)
    # The app answered without CORS headers (no CORS layer inside): its answer is replaced by an empty one.
    assert resp.status_code == 200 and "WWW-Authenticate" not in resp.headers
    assert resp.data == b""
    # A plain OPTIONS and the real request are checked.
    assert Client(app).options("/items", headers={"Origin": "https://app.example"}).status_code == 401
    assert Client(app).post("/items", headers={"Origin": "https://app.example"}).status_code == 401


def test_cors_preflight_answered_by_a_cors_layer_inside_goes_out(issuer: TestIssuer) -> None:
    def cors_app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("204 No Content", [("Access-Control-Allow-Origin", "https://app.example")])
        return []

    resp = Client(DPoPWSGIMiddleware(cors_app, DPoPVerifier(issuer.validator()), allowed_hosts="localhost")).options(
        "/items", headers=PREFLIGHT
    )
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
