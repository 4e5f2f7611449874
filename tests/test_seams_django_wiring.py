"""Issue 19, Django wiring seams: query-string tokens (§1.10), decorators without the middleware
(§2), CSRF with DPoP (§2), report_only decorated views (§2), CORS preflights (§2) and hosts
outside ALLOWED_HOSTS (§1.8)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import AsyncClient, Client
from django_app.harness import django_settings, ensure_django

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers

ensure_django()

ISSUER = TestIssuer(audience="https://api.test")
JWT = {"ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks}
URLS = {"ROOT_URLCONF": "django_app.seams_urls"}
BASE = "http://testserver"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
DPOP = "dpop_middleware.django.DPoPMiddleware"


def signed(path: str, scope: str = "read", method: str = "GET", url: str | None = None) -> dict[str, str]:
    key = DPoPKey.generate()
    headers = dpop_headers(key, method, url or BASE + path, ISSUER.token(key.jkt, scope=scope))
    return {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}


def ids(messages: list[Any]) -> list[str]:
    return sorted(m.id for m in messages)


# -- §1.10: an access token in the query string ------------------------------------------------


@pytest.mark.parametrize("path", ["/undecorated", "/notes", "/drf/toy-bearer"])
def test_access_token_in_query_alone_is_challenged(path: str, caplog: pytest.LogCaptureFixture) -> None:
    dpop = {**JWT, "EXEMPT_PATHS": [r"^/drf/"]}  # the DRF view: DPoPAuthentication alone decides
    with caplog.at_level(logging.INFO, "dpop_middleware"), django_settings(dpop, **URLS):
        resp = Client().get(f"{path}?access_token=x")
    assert resp.status_code == 401
    assert resp["WWW-Authenticate"].startswith("DPoP ")
    assert b"toy-user" not in resp.content
    assert [getattr(r, "dpop_reason", None) for r in caplog.records if r.name == "dpop_middleware"] == ["token_in_query"]


@pytest.mark.parametrize("path", ["/undecorated", "/drf/toy-bearer"])
def test_access_token_in_query_and_header_is_a_400(path: str, caplog: pytest.LogCaptureFixture) -> None:
    dpop = {**JWT, "EXEMPT_PATHS": [r"^/drf/"]}
    with caplog.at_level(logging.INFO, "dpop_middleware"), django_settings(dpop, **URLS):
        resp = Client().get(f"{path}?access_token=x", **signed(path))
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"
    assert [getattr(r, "dpop_reason", None) for r in caplog.records if r.name == "dpop_middleware"] == ["multiple_token_locations"]


def test_a_query_without_a_token_does_not_change_htu() -> None:
    with django_settings(JWT, **URLS):
        resp = Client().get("/undecorated?page=2", **signed("/undecorated"))
    assert resp.status_code == 200 and resp.json() == {"anonymous": False}


# -- §2: a decorated view the middleware never saw ----------------------------------------------


@pytest.mark.parametrize("path", ["/notes", "/maybe", "/async-report"])
def test_decorated_view_without_the_middleware_is_refused_with_503(path: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "dpop_middleware"), django_settings(JWT, middleware=False, **URLS):
        resp = Client().post(path) if path == "/notes" else Client().get(path)
    assert resp.status_code == 503
    assert resp.json()["error"] == "middleware_missing"
    errors = [r.getMessage() for r in caplog.records if r.name == "dpop_middleware" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "add dpop_middleware.django.DPoPMiddleware to MIDDLEWARE" in errors[0]


def test_decorated_class_view_without_the_middleware_is_refused_with_503() -> None:
    with django_settings(JWT, middleware=False, **URLS):
        assert Client().post("/class-note").status_code == 503


async def test_async_decorated_view_without_the_middleware_is_refused_with_503() -> None:
    with django_settings(JWT, middleware=False, **URLS):
        resp = await AsyncClient().get("/async-report")
    assert resp.status_code == 503


def test_system_check_error_when_the_middleware_is_missing() -> None:
    with django_settings(JWT, middleware=False, REST_FRAMEWORK={}, **URLS):
        assert "dpop_middleware.E005" in ids(run_checks(tags=["security"]))
    with django_settings(JWT, **URLS):
        assert "dpop_middleware.E005" not in ids(run_checks(tags=["security"]))
    # DRF's DPoPAuthentication serves DRF views alone, but the plain Django views marked
    # @dpop_required in the URLconf still need the middleware: named in the error.
    with django_settings(JWT, middleware=False, **URLS):
        errors = [m for m in run_checks(tags=["security"]) if m.id == "dpop_middleware.E005"]
        assert len(errors) == 1 and "create_note" in errors[0].msg


# -- §2: CSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["csrf-first", "dpop-first"])
def test_readme_post_example_works_with_csrf_enforced(order: str) -> None:
    middleware = [CSRF, DPOP] if order == "csrf-first" else [DPOP, CSRF]
    with django_settings(JWT, MIDDLEWARE=middleware, **URLS):
        client = Client(enforce_csrf_checks=True)
        resp = client.post("/notes", **signed("/notes", scope="notes:write", method="POST"))
        assert resp.status_code == 200, resp.content
        assert resp.json()["sub"] == "alice"
        cls = client.post("/class-note", **signed("/class-note", method="POST"))
        assert cls.status_code == 200, cls.content


def test_undecorated_view_skips_csrf_only_after_the_proof_verified() -> None:
    with django_settings(JWT, MIDDLEWARE=[DPOP, CSRF], **URLS):
        client = Client(enforce_csrf_checks=True)
        ok = client.post("/undecorated", **signed("/undecorated", method="POST"))
        assert ok.status_code == 200 and ok.json() == {"anonymous": False}
    # Optional route: an anonymous cookie request is still CSRF-checked.
    with django_settings({**JWT, "DEFAULT": "optional"}, MIDDLEWARE=[DPOP, CSRF], **URLS):
        client = Client(enforce_csrf_checks=True)
        client.cookies["sessionid"] = "victim-session"
        assert client.post("/undecorated").status_code == 403


@pytest.mark.parametrize("order", ["csrf-first", "dpop-first"])
def test_session_cookie_without_valid_dpop_is_still_csrf_checked(order: str) -> None:
    middleware = [CSRF, DPOP] if order == "csrf-first" else [DPOP, CSRF]
    with django_settings({**JWT, "MODE": "report_only"}, MIDDLEWARE=middleware, **URLS):
        client = Client(enforce_csrf_checks=True)
        client.cookies["sessionid"] = "victim-session"
        # No proof at all, then a DPoP header that does not verify: the view must not run.
        assert client.post("/report").status_code == 403
        bad = {"HTTP_AUTHORIZATION": "DPoP abc", "HTTP_DPOP": "x.y.z"}
        assert client.post("/report", **bad).status_code == 403
        assert client.post("/maybe", **bad).status_code == 403


def test_csrf_order_warning() -> None:
    with django_settings(JWT, MIDDLEWARE=[CSRF, DPOP], **URLS):
        assert "dpop_middleware.W006" in ids(run_checks(tags=["security"]))
    with django_settings(JWT, MIDDLEWARE=[DPOP, CSRF], **URLS):
        assert "dpop_middleware.W006" not in ids(run_checks(tags=["security"]))


# -- §2: report_only ----------------------------------------------------------------------------


def test_report_only_decorated_views_get_none_and_do_not_crash() -> None:
    with django_settings({**JWT, "MODE": "report_only"}, **URLS):
        assert Client().get("/report").json() == {"anonymous": True}
        assert Client().get("/report", HTTP_AUTHORIZATION="DPoP abc", HTTP_DPOP="x.y.z").json() == {"anonymous": True}
        assert Client().get("/report", **signed("/report")).json() == {"anonymous": False}
        assert Client().get("/drf/declares-scopes").status_code == 200  # no principal, not refused


async def test_report_only_async_decorated_view_gets_none() -> None:
    with django_settings({**JWT, "MODE": "report_only"}, **URLS):
        resp = await AsyncClient().get("/async-report")
    assert resp.status_code == 200 and resp.json() == {"anonymous": True}


def test_report_only_warns_once_when_the_app_becomes_ready(caplog: pytest.LogCaptureFixture) -> None:
    from django.apps import apps

    with django_settings({**JWT, "MODE": "report_only"}, **URLS), caplog.at_level(logging.WARNING, "dpop_middleware"):
        apps.get_app_config("dpop_middleware").ready()
        warnings = [r.getMessage() for r in caplog.records if "report_only" in r.getMessage()]
    assert len(warnings) == 1
    assert "existing authentication in front" in warnings[0]


# -- §2: CORS preflights ------------------------------------------------------------------------

PREFLIGHT = {"HTTP_ORIGIN": "https://app.example", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}


@pytest.mark.parametrize("path", ["/notes", "/undecorated", "/class-note", "/drf/declares-scopes", "/drf/toy-bearer"])
def test_cors_preflight_is_never_challenged(path: str) -> None:
    with django_settings(JWT, **URLS):
        resp = Client().options(path, **PREFLIGHT)
    assert resp.status_code != 401 and resp.status_code < 500
    assert "WWW-Authenticate" not in resp


def test_cors_preflight_never_runs_a_decorated_view_without_principal() -> None:
    with django_settings(JWT, **URLS):
        resp = Client().options("/notes", **PREFLIGHT)  # create_note would crash on request.dpop None
    assert resp.status_code == 200 and resp.content == b""


def test_options_without_the_preflight_headers_is_challenged() -> None:
    with django_settings(JWT, **URLS):
        assert Client().options("/notes", HTTP_ORIGIN="https://app.example").status_code == 401


# -- §1.8: Django's ALLOWED_HOSTS ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/notes", "/maybe", "/undecorated", "/drf/declares-scopes"])
def test_host_outside_allowed_hosts_never_reaches_a_2xx(path: str) -> None:
    """Django's get_host() checks ALLOWED_HOSTS; the adapter builds htu through it."""
    url = f"http://evil.example{path}"
    with django_settings(JWT, **URLS):
        for extra in ({}, signed(path, scope="read notes:write write", url=url)):
            resp = Client().get(path, HTTP_HOST="evil.example", **extra)
            assert resp.status_code == 400, (path, resp.status_code)
            assert resp["WWW-Authenticate"].startswith("DPoP ")


@pytest.mark.parametrize("path", ["/undecorated", "/notes"])
def test_a_verified_proof_with_a_session_cookie_is_still_csrf_checked(path: str) -> None:
    # A cross-site page may attach its *own* key, token and proof to a credentialed request that also
    # carries the victim's session cookie: the proof vouches for the key holder, not the cookie's owner.
    with django_settings({**JWT, "DEFAULT": "optional"}, MIDDLEWARE=[DPOP, CSRF], **URLS):
        client = Client(enforce_csrf_checks=True)
        client.cookies["sessionid"] = "victim-session"
        resp = client.post(path, HTTP_ORIGIN="https://evil.example", **signed(path, scope="notes:write", method="POST"))
        assert resp.status_code == 403


@pytest.mark.parametrize("path", ["/undecorated", "/notes"])
def test_a_preflight_shaped_request_never_runs_a_protected_view(path: str) -> None:
    # OPTIONS with Origin and Access-Control-Request-Method is anyone's to send: it is not challenged,
    # but the (method-agnostic) view must not run for it, or it would serve an unauthenticated caller.
    with django_settings(JWT, **URLS):
        resp = Client().options(path, **PREFLIGHT)
    assert resp.status_code == 200 and resp.content == b""


def test_drf_view_refuses_a_preflight_that_no_cors_layer_answered() -> None:
    # Without DPoPMiddleware and without a CORS layer, DRF would serve its OPTIONS metadata anonymously.
    with django_settings(JWT, middleware=False, **URLS):
        resp = Client().options("/drf/required", **PREFLIGHT)
    assert resp.status_code == 401
    assert b"secret" not in resp.content
