"""WSGI middleware regressions from the security review: dot segments, trusted headers, bad URLs.

The app behind :class:`DPoPWSGIMiddleware` is a Flask app with a catch-all ``/admin/<path:rest>``
route, which serves ``/admin/../public`` literally: path rules must agree with that routing.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request
from werkzeug.test import Client
from wsgi_app_support import bare_app

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.origin import ProxySettings
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.verifier import Outcome
from dpop_middleware.wsgi import DPoPWSGIMiddleware, authenticate_environ, principal_from_environ

BASE = "http://localhost"




def routed(issuer: TestIssuer, **options: Any) -> Client:
    app = Flask(__name__)

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"public": True}

    @app.get("/admin/<path:rest>")
    def admin(rest: str) -> dict[str, Any]:
        principal = principal_from_environ(request.environ)
        return {"admin": True, "scopes": sorted(principal.scopes) if principal else None}

    app.wsgi_app = DPoPWSGIMiddleware(app.wsgi_app, DPoPVerifier(issuer.validator()), **options)  # type: ignore[method-assign]
    return Client(app)


@pytest.mark.parametrize("path", ["/admin/../public", "/admin/%2E%2E/public", "/admin/%2e%2e/public"])
def test_dot_segments_cannot_borrow_an_exempt_rule(issuer: TestIssuer, path: str) -> None:
    client = routed(issuer, exempt_paths=["/public"])
    resp = client.get(path)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("DPoP ")
    assert client.get("/public").status_code == 200


def test_dot_segments_cannot_shed_a_path_scope(issuer: TestIssuer, key: DPoPKey) -> None:
    client = routed(issuer, path_scopes={"/admin": "admin"})
    path = "/admin/x/%2E%2E/%2E%2E/users"
    for granted, status in (("read", 403), ("read admin", 200)):
        token = issuer.token(key.jkt, scope=granted)
        resp = client.get(path, headers=dpop_headers(key, "GET", BASE + path, token))
        assert resp.status_code == status, granted
    token = issuer.token(key.jkt, scope="read")
    resp = client.get("/admin/users", headers=dpop_headers(key, "GET", BASE + "/admin/users", token))
    assert resp.status_code == 403 and 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


def test_a_passed_through_forwarding_header_is_ignored(issuer: TestIssuer, key: DPoPKey) -> None:
    """The trusted proxy sets X-Forwarded-Proto; the client's X-Forwarded-Host goes through it."""
    client = routed(issuer, trusted_proxies="10.0.0.0/8")
    sent = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    from_proxy = {"REMOTE_ADDR": "10.0.0.7"}
    token = issuer.token(key.jkt)

    def get(signed_url: str) -> int:
        headers = {**dpop_headers(key, "GET", signed_url, token), **sent}
        return client.get("/admin/x", headers=headers, environ_base=from_proxy).status_code

    assert get("https://evil.example/admin/x") == 401
    assert get("https://localhost/admin/x") == 200
    opted_in = routed(issuer, trusted_proxies="10.0.0.0/8", trusted_headers=["X-Forwarded-Proto", "X-Forwarded-Host"])
    headers = {**dpop_headers(key, "GET", "https://evil.example/admin/x", token), **sent}
    assert opted_in.get("/admin/x", headers=headers, environ_base=from_proxy).status_code == 200


def test_unknown_trusted_header_is_a_configuration_error(issuer: TestIssuer) -> None:
    with pytest.raises(ValueError, match="unknown forwarding headers"):
        routed(issuer, trusted_headers="X-Real-IP")


def bad_environ() -> dict[str, Any]:
    # A lone surrogate in PATH_INFO and no raw target: the URL cannot be rebuilt.
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/\ud800", "SCRIPT_NAME": "", "wsgi.url_scheme": "http",
            "HTTP_HOST": "localhost", "REMOTE_ADDR": "203.0.113.9"}  # fmt: skip


def test_untranslatable_environ_is_a_400_not_a_500(issuer: TestIssuer) -> None:
    verifier = DPoPVerifier(issuer.validator())
    result = authenticate_environ(verifier, bad_environ(), ProxySettings.create())
    assert result.rejection is not None and result.rejection.status == 400
    assert result.rejection.error.reason == "bad_request_url"

    statuses: list[str] = []
    middleware = DPoPWSGIMiddleware(None, verifier)  # type: ignore[arg-type]
    body = middleware(bad_environ(), lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type,return-value]
    assert statuses == ["400 Bad Request"] and b"invalid_request" in b"".join(body)


def test_a_path_scope_failure_is_one_outcome(issuer: TestIssuer, key: DPoPKey) -> None:
    outcomes: list[Outcome] = []
    verifier = DPoPVerifier(issuer.validator(), on_outcome=outcomes.append)
    client = Client(DPoPWSGIMiddleware(bare_app, verifier, path_scopes={"/admin": "admin"}))
    resp = client.get("/admin/x", headers=dpop_headers(key, "GET", BASE + "/admin/x", issuer.token(key.jkt)))
    assert resp.status_code == 403
    assert [o.outcome for o in outcomes] == ["rejected"]
