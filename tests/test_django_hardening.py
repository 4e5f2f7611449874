"""Django regressions from the security review: path rules vs. routing, trusted headers, one outcome.

* ``EXEMPT_PATHS``/``OPTIONAL_PATHS`` regexes are matched against the path Django routes; a path
  with dot segments gets the stricter policy of its literal and normalized readings.
* ``DPOP["TRUSTED_HEADERS"]``: only the listed forwarding headers are believed from a trusted proxy.
* The middleware checks a view's scopes inside ``authenticate()``: one outcome per request.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django_app.harness import django_settings, ensure_django

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.django.conf import build_state
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.verifier import Outcome

ensure_django()

ISSUER = TestIssuer(audience="https://api.test")
JWT_SETTINGS = {"ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks}
URLS = {"ROOT_URLCONF": "django_app.hardening_urls"}
BASE = "http://testserver"


def signed(path: str, url: str | None = None, scope: str = "read") -> dict[str, str]:
    key = DPoPKey.generate()
    headers = dpop_headers(key, "GET", url or BASE + path, ISSUER.token(key.jkt, scope=scope))
    return {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}


# -- path rules see what Django routes -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/../public", "/admin/%2E%2E/public", "/admin/%2e%2e/public"])
def test_dot_segments_cannot_borrow_an_exempt_rule(path: str) -> None:
    with django_settings({**JWT_SETTINGS, "EXEMPT_PATHS": [r"^/public(/|$)"]}, **URLS):
        resp = Client().get(path)
        assert resp.status_code == 401  # routed to admin(), so not exempt
        assert resp["WWW-Authenticate"].startswith("DPoP ")
        assert Client().get("/public").status_code == 200


@pytest.mark.parametrize("rule", ["EXEMPT_PATHS", "OPTIONAL_PATHS"])
def test_a_relaxing_rule_must_hold_for_the_normalized_path_too(rule: str) -> None:
    """/public/../admin/x is literally below /public (and routed there), but a normalizing proxy or
    cache would call it /admin/x: the stricter reading wins."""
    with django_settings({**JWT_SETTINGS, rule: [r"^/public(/|$)"]}, **URLS):
        assert Client().get("/public/../admin/x").status_code == 401
        assert Client().get("/public/./docs").status_code == 200  # both readings below /public
        assert Client().get("/public/docs").status_code == 200


def test_dot_segments_cannot_shed_view_scopes() -> None:
    with django_settings(JWT_SETTINGS, **URLS):
        path = "/scoped-admin/x/%2E%2E/%2E%2E/users"
        resp = Client().get(path, **signed(path))
        assert resp.status_code == 403
        assert 'error="insufficient_scope"' in resp["WWW-Authenticate"]
        assert Client().get(path, **signed(path, scope="admin")).status_code == 200


# -- TRUSTED_HEADERS -----------------------------------------------------------------------------


def test_a_passed_through_forwarding_header_is_ignored() -> None:
    """The test client's REMOTE_ADDR is 127.0.0.1, our trusted proxy; it sets X-Forwarded-Proto
    and passes the client's X-Forwarded-Host through."""
    sent = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "evil.example"}
    with django_settings({**JWT_SETTINGS, "TRUSTED_PROXIES": ["127.0.0.1"]}):
        assert Client().get("/protected", **signed("/protected", "https://evil.example/protected"), **sent).status_code == 401
        assert Client().get("/protected", **signed("/protected", "https://testserver/protected"), **sent).status_code == 200
    opted_in = {**JWT_SETTINGS, "TRUSTED_PROXIES": ["127.0.0.1"], "TRUSTED_HEADERS": "x-forwarded-proto x-forwarded-host"}
    with django_settings(opted_in):
        assert Client().get("/protected", **signed("/protected", "https://evil.example/protected"), **sent).status_code == 200


def test_unknown_trusted_header_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_HEADERS"):
        build_state({**JWT_SETTINGS, "TRUSTED_HEADERS": ["X-Real-IP"]})
    verifier = DPoPVerifier(ISSUER.validator())
    state = build_state({"VERIFIER": verifier, "TRUSTED_PROXIES": "10.0.0.0/8", "TRUSTED_HEADERS": ["Forwarded"]})
    assert state.proxy.trusted_headers == frozenset({"forwarded"})


# -- one outcome per request ----------------------------------------------------------------------


@pytest.mark.parametrize("granted", ["read", "write"])
def test_scope_check_reports_one_outcome(granted: str) -> None:
    outcomes: list[Outcome] = []
    verifier = DPoPVerifier(ISSUER.validator(), on_outcome=outcomes.append)
    with django_settings({"VERIFIER": verifier}):
        resp: Any = Client().get("/scoped", **signed("/scoped", scope=granted))
    expected = ("rejected", 403) if granted == "read" else ("accepted", 200)
    assert resp.status_code == expected[1]
    assert [o.outcome for o in outcomes] == [expected[0]]
