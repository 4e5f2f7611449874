"""DPoPWSGIMiddleware specifics beyond the shared case table: path rules, nonce headers, environ."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from werkzeug.test import Client, EnvironBuilder
from wsgi_app_support import bare_app

from dpop_middleware import DPoPVerifier, NonceKeyring
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.routes import RoutePolicy, path_matches
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.wsgi import DPoPWSGIMiddleware, error_status_line

BASE = "http://localhost"




def client(issuer: TestIssuer, app: Any = bare_app, **options: Any) -> Client:
    verifier_options = options.pop("verifier_options", {})
    return Client(DPoPWSGIMiddleware(app, DPoPVerifier(issuer.validator(), **verifier_options), **options))


def good(issuer: TestIssuer, key: DPoPKey, path: str, method: str = "GET", **claims: Any) -> dict[str, str]:
    return dpop_headers(key, method, BASE + path, issuer.token(key.jkt, **claims))


@pytest.mark.parametrize(
    ("path", "rule", "expected"),
    [
        ("/health", "/health", True),
        ("/health/db", "/health", True),
        ("/healthz", "/health", False),
        # path_matches reads the path literally, as routers do; RoutePolicy weighs both readings.
        ("/health/../admin", "/health", True),
        ("/admin/../health", "/health", False),
        ("/x/./health", "/x/health", False),
        ("/anything", "/", True),
        ("/Health", "/health", False),
    ],
)
def test_path_matches_by_whole_segments(path: str, rule: str, expected: bool) -> None:
    assert path_matches(path, rule) is expected


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/health/db", True),
        ("/health/../admin", False),  # literally below /health, but normalized it is /admin
        ("/admin/../health", False),  # normalized /health, but a router sends it to /admin/<path>
        ("/health/./db", True),  # both readings are below /health
    ],
)
def test_relaxing_rules_hold_for_both_readings_of_a_path(path: str, exempt: bool) -> None:
    rules = RoutePolicy.create(exempt_paths=["/health"], path_scopes={"/admin": "admin"})
    assert rules.decide(path).exempt is exempt
    assert ("admin" in rules.decide(path).scopes) is ("admin" in path)


def test_path_rules_validate_and_collect_scopes() -> None:
    rules = RoutePolicy.create(path_scopes={"/a": "read write", "/a/b": ["admin", "read"]}, optional_paths=["/pub/"])
    assert rules.decide("/a/b/c").scopes == ("read", "write", "admin")
    assert rules.decide("/b").scopes == ()
    assert not rules.decide("/pub/x").required
    with pytest.raises(ValueError, match="start with"):
        RoutePolicy.create(exempt_paths=["health"])


def test_exempt_path_is_never_checked_and_sets_no_principal(issuer: TestIssuer) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["dpop"] = environ["dpop"]
        return bare_app(environ, start_response)

    c = client(issuer, app, exempt_paths=["/health"])
    assert c.get("/health/db", headers={"DPoP": "junk"}).status_code == 200
    assert seen["dpop"] is None
    assert c.get("/healthz").status_code == 401
    assert c.get("/health/../protected").status_code == 401


def test_principal_in_environ(issuer: TestIssuer, key: DPoPKey) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["dpop"] = environ["dpop"]
        return bare_app(environ, start_response)

    resp = client(issuer, app).get("/x", headers=good(issuer, key, "/x"))
    assert resp.status_code == 200
    assert seen["dpop"].jkt == key.jkt and seen["dpop"].is_dpop_bound


def test_not_required_lets_anonymous_through_but_checks_credentials(issuer: TestIssuer, key: DPoPKey) -> None:
    c = client(issuer, required=False)
    assert c.get("/x").json == {"anonymous": True}
    bad = good(issuer, key, "/other")
    assert c.get("/x", headers=bad).status_code == 401


def test_rejection_is_the_core_response(issuer: TestIssuer) -> None:
    resp = client(issuer).get("/x", headers={"Authorization": "DPoP abc", "DPoP": "not.a.jwt"})
    assert resp.status == "401 Unauthorized"
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Content-Length"] == str(len(resp.get_data()))
    assert json.loads(resp.get_data())["error"] == "invalid_dpop_proof"
    assert resp.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')


def test_fresh_nonce_added_to_app_response(issuer: TestIssuer, key: DPoPKey) -> None:
    options = {"nonce_policy": "unsafe_methods", "nonce_keyring": NonceKeyring({"k": b"0123456789abcdef"})}
    resp = client(issuer, verifier_options=options).get("/x", headers=good(issuer, key, "/x"))
    assert resp.status_code == 200
    assert len(resp.headers.getlist("DPoP-Nonce")) == 1
    assert resp.headers["X-Path-Info"] == "|/x"  # the app's own headers are kept


def test_nonce_wrapper_passes_exc_info(issuer: TestIssuer, key: DPoPKey) -> None:
    calls: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("A", "1")])
        try:
            raise RuntimeError("late failure")
        except RuntimeError:
            start_response("500 Internal Server Error", [("B", "2")], sys.exc_info())
        return [b""]

    options = {"nonce_policy": "unsafe_methods", "nonce_keyring": NonceKeyring({"k": b"0123456789abcdef"})}
    middleware = DPoPWSGIMiddleware(app, DPoPVerifier(issuer.validator(), **options))
    environ = EnvironBuilder(path="/x", headers=good(issuer, key, "/x")).get_environ()
    middleware(environ, lambda status, headers, exc_info=None: calls.append((status, headers, exc_info)))
    assert [c[0] for c in calls] == ["200 OK", "500 Internal Server Error"]
    assert calls[1][2] is not None and calls[1][2][0] is RuntimeError
    assert all(any(name == "DPoP-Nonce" for name, _ in c[1]) for c in calls)


def test_path_scopes(issuer: TestIssuer, key: DPoPKey) -> None:
    c = client(issuer, path_scopes={"/admin": "admin"})
    resp = c.get("/admin/users", headers=good(issuer, key, "/admin/users"))
    assert resp.status_code == 403
    assert 'scope="admin"' in resp.headers["WWW-Authenticate"]
    assert c.get("/admin/users", headers=good(issuer, key, "/admin/users", scope="admin")).status_code == 200


def test_hostile_host_is_400_with_challenge(issuer: TestIssuer, key: DPoPKey) -> None:
    headers = dict(good(issuer, key, "/x"), Host="localhost/x?")
    resp = client(issuer).get("/x", headers=headers)
    assert resp.status_code == 400
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


def test_unreadable_environ_fails_closed(issuer: TestIssuer, key: DPoPKey) -> None:
    environ = EnvironBuilder(path="/x", headers=good(issuer, key, "/x")).get_environ()
    environ["wsgi.url_scheme"] = object()  # a broken server: never a 500, never accepted
    calls: list[str] = []
    body = DPoPWSGIMiddleware(bare_app, DPoPVerifier(issuer.validator()))(environ, lambda s, h, e=None: calls.append(s))
    assert calls and not calls[0].startswith("200"), (calls, list(body))


def test_status_line() -> None:
    assert error_status_line(503) == "503 Service Unavailable"
    assert error_status_line(299) == "299 Error"
