"""Issue 19 §1.8 for Flask: the Host header is believed only for allowed hosts.

``DPOP_ALLOWED_HOSTS`` (or Flask's own ``TRUSTED_HOSTS``, when it checks the same host) pins the
host of the URL proofs are checked against; without it nor ``DPOP_PUBLIC_URL``, ``init_app`` warns
once outside debug.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from dpop_middleware.client import DPoPKey
from dpop_middleware.flask import DPoP
from dpop_middleware.testing import TestIssuer, dpop_headers

WARNING_NAMES = "DPOP_PUBLIC_URL or DPOP_ALLOWED_HOSTS"




def make_app(issuer: TestIssuer, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks, **config)
    dpop = DPoP(app)

    @app.get("/me")
    @dpop.required
    def me() -> dict[str, Any]:
        return {"ok": True}

    return app


def get_as(app: Flask, issuer: TestIssuer, key: DPoPKey, host: str, **kw: Any) -> Any:
    """A request to ``host`` carrying a proof made for that very host (a captured one, replayed there)."""
    headers = dict(dpop_headers(key, "GET", f"http://{host}/me", issuer.token(key.jkt)), Host=host)
    headers.update(kw.pop("headers", {}))
    return app.test_client().get("/me", headers=headers, **kw)


def assert_refused_as_bad_host(resp: Any) -> None:
    assert resp.status_code == 400
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize("allowed", [["api.example.com", ".internal.example"], "api.example.com, .internal.example"])
def test_allowed_hosts_pins_the_host(issuer: TestIssuer, key: DPoPKey, allowed: Any) -> None:
    app = make_app(issuer, DPOP_ALLOWED_HOSTS=allowed)
    assert get_as(app, issuer, key, "api.example.com").status_code == 200
    assert get_as(app, issuer, key, "svc.internal.example").status_code == 200
    assert_refused_as_bad_host(get_as(app, issuer, key, "other-api.example.com"))


def test_allowed_hosts_checks_a_forwarded_host_too(issuer: TestIssuer, key: DPoPKey) -> None:
    app = make_app(
        issuer,
        DPOP_ALLOWED_HOSTS=["api.example.com"],
        DPOP_TRUSTED_PROXIES="127.0.0.1",
        DPOP_TRUSTED_HEADERS="X-Forwarded-Host",
    )
    forwarded = {"headers": {"X-Forwarded-Host": "other-api.example.com"}}
    assert_refused_as_bad_host(get_as(app, issuer, key, "other-api.example.com", **forwarded))


def test_flask_trusted_hosts_is_an_allowed_hosts_source(issuer: TestIssuer, key: DPoPKey) -> None:
    app = make_app(issuer, TRUSTED_HOSTS=["api.example.com:8443"])
    assert app.extensions["dpop"].proxy_settings.allowed_hosts == ("api.example.com",)
    assert get_as(app, issuer, key, "api.example.com:8443").status_code == 200
    resp = get_as(app, issuer, key, "other-api.example.com")
    assert resp.status_code == 400  # Flask's own check or ours: never served


def test_trusted_hosts_is_not_used_when_a_forwarded_host_decides(issuer: TestIssuer) -> None:
    app = make_app(
        issuer,
        TRUSTED_HOSTS=["internal"],
        DPOP_TRUSTED_PROXIES="10.0.0.0/8",
        DPOP_TRUSTED_HEADERS=["X-Forwarded-Host", "X-Forwarded-Proto"],
    )
    # Flask checks the proxy's Host; our URL uses the forwarded public one, which TRUSTED_HOSTS does not list.
    assert app.extensions["dpop"].proxy_settings.allowed_hosts is None


@pytest.mark.parametrize(
    ("config", "debug", "warns"),
    [
        ({}, False, True),
        ({}, True, False),
        ({"DPOP_DEBUG": True}, False, False),
        ({"DPOP_PUBLIC_URL": "https://api.example.com"}, False, False),
        ({"DPOP_ALLOWED_HOSTS": "api.example.com"}, False, False),
        ({"TRUSTED_HOSTS": ["api.example.com"]}, False, False),
    ],
)
def test_unpinned_host_warns_once_at_init_app(
    issuer: TestIssuer, key: DPoPKey, caplog: pytest.LogCaptureFixture, config: dict[str, Any], debug: bool, warns: bool
) -> None:
    app = Flask(__name__)
    app.debug = debug
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks, **config)
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        DPoP(app)
        app.test_client().get("/anything")
        app.test_client().get("/anything")
    said = [r for r in caplog.records if r.levelno == logging.WARNING and WARNING_NAMES in r.getMessage()]
    assert len(said) == (1 if warns else 0)
