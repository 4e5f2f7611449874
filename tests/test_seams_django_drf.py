"""Issue 19, DRF seams: a Bearer token never slips past DPoPAuthentication in ``required`` mode
(§1.9), and scopes a view declares are enforced without a separate permission (§2)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_app.harness import django_settings, ensure_django

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers

ensure_django()

ISSUER = TestIssuer(audience="https://api.test")
JWT = {"ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks}
URLS = {"ROOT_URLCONF": "django_app.seams_urls"}
BASE = "http://testserver"


def signed(path: str, scope: str = "read", method: str = "GET") -> dict[str, str]:
    key = DPoPKey.generate()
    headers = dpop_headers(key, method, BASE + path, ISSUER.token(key.jkt, scope=scope))
    return {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}


def bound_token_as_bearer() -> dict[str, str]:
    """A DPoP-bound token (cnf.jkt) stripped of its proof and sent as Bearer."""
    return {"HTTP_AUTHORIZATION": f"Bearer {ISSUER.token(DPoPKey.generate().jkt)}"}


# -- §1.9: Bearer in required mode ---------------------------------------------------------------


@pytest.mark.parametrize("middleware", [False, True])
@pytest.mark.parametrize("token", ["bound", "unbound", "garbage"])
def test_required_mode_refuses_bearer_before_a_later_bearer_class(middleware: bool, token: str) -> None:
    headers: dict[str, Any] = {
        "bound": bound_token_as_bearer(),
        "unbound": {"HTTP_AUTHORIZATION": f"Bearer {ISSUER.token(None)}"},
        "garbage": {"HTTP_AUTHORIZATION": "Bearer abc"},
    }[token]
    # With the middleware, the DRF path is exempt so that DPoPAuthentication alone decides.
    dpop = {**JWT, "EXEMPT_PATHS": [r"^/drf/"]} if middleware else JWT
    with django_settings(dpop, middleware=middleware, **URLS):
        resp = Client().get("/drf/toy-bearer", **headers)
    assert resp.status_code == 401, resp.content
    assert resp["WWW-Authenticate"].startswith("DPoP ")
    assert b"toy-user" not in resp.content


@pytest.mark.parametrize("rule", ["DEFAULT", "OPTIONAL_PATHS"])
def test_an_optional_middleware_route_does_not_open_the_bearer_hole(rule: str) -> None:
    """The middleware lets a Bearer token pass as anonymous on an optional route; DRF must not
    then hand it to the next class."""
    dpop = {**JWT, "DEFAULT": "optional"} if rule == "DEFAULT" else {**JWT, "OPTIONAL_PATHS": [r"^/drf/"]}
    with django_settings(dpop, **URLS):
        bearer = Client().get("/drf/toy-bearer", **bound_token_as_bearer())
        assert bearer.status_code == 401 and b"toy-user" not in bearer.content
        query = Client().get("/drf/toy-bearer?access_token=x")
        assert query.status_code == 401 and b"toy-user" not in query.content
        anonymous = Client().get("/drf/toy-bearer")
        assert anonymous.status_code == 200 and anonymous.json()["user"] == "None"


def test_a_project_may_let_a_later_class_handle_bearer_explicitly() -> None:
    with django_settings(JWT, middleware=False, **URLS):
        resp = Client().get("/drf/toy-bearer-opt-in", **bound_token_as_bearer())
        assert resp.status_code == 200
        assert resp.json() == {"user": "toy-user", "auth": "toy-token"}
        # A DPoP request is still ours, on both views.
        ok = Client().get("/drf/toy-bearer", **signed("/drf/toy-bearer"))
        assert ok.status_code == 200 and ok.json()["user"] != "toy-user"


def test_other_schemes_and_plain_queries_still_pass_to_the_next_class() -> None:
    with django_settings(JWT, middleware=False, **URLS):
        anonymous = Client().get("/drf/toy-bearer?page=2")
        assert anonymous.status_code == 200 and anonymous.json()["user"] == "None"
        basic = Client().get("/drf/toy-bearer?page=2", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
        assert basic.status_code == 200


def test_allow_bearer_mode_takes_the_bearer_token_itself() -> None:
    with django_settings({**JWT, "MODE": "allow_bearer"}, middleware=False, **URLS):
        resp = Client().get("/drf/toy-bearer", HTTP_AUTHORIZATION=f"Bearer {ISSUER.token(None)}")
    assert resp.status_code == 200
    assert resp.json()["user"] == "alice"


# -- §2: scopes a DRF view declares -------------------------------------------------------------


@pytest.mark.parametrize("middleware", [False, True])
@pytest.mark.parametrize("path", ["/drf/declares-scopes", "/drf/decorated-scopes"])
def test_declared_scopes_are_enforced_without_the_permission(middleware: bool, path: str) -> None:
    with django_settings(JWT, middleware=middleware, **URLS):
        lacking = Client().get(path, **signed(path, scope="read"))
        assert lacking.status_code == 403, lacking.content
        assert 'error="insufficient_scope"' in lacking["WWW-Authenticate"]
        assert lacking.json()["error"] == "insufficient_scope"
        holding = Client().get(path, **signed(path, scope="read write"))
        assert holding.status_code == 200
        assert holding.json() == {"sub": "alice"}


@pytest.mark.parametrize("path", ["/drf/declares-scopes", "/drf/decorated-scopes"])
def test_a_view_declaring_scopes_refuses_anonymous_requests(path: str) -> None:
    with django_settings(JWT, middleware=False, **URLS):
        resp = Client().get(path)
    assert resp.status_code == 401
    assert resp["WWW-Authenticate"].startswith("DPoP ")


def test_drf_without_any_dpop_check_is_refused_with_503(caplog: pytest.LogCaptureFixture) -> None:
    """DPoPRequired as permission, but neither the middleware nor DPoPAuthentication ran."""
    with django_settings({**JWT, "MODE": "report_only"}, middleware=False, **URLS):
        resp = Client().get("/drf/permission-only")
    assert resp.status_code == 503
    assert resp.json()["error"] == "middleware_missing"
    assert b"ran" not in resp.content
    assert any("DPoPMiddleware to MIDDLEWARE" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
