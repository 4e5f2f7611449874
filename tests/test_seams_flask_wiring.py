"""Issue 19 §2 for Flask: wiring that cannot leave a route open.

* ``@dpop.required`` / ``@dpop.optional`` on a view the extension does not check (``DPoP()`` never
  ``init_app``'d, or ``init_app``'d on another app) refuse the request with 503 and one ERROR
  naming the fix; the view never runs.
* ``report_only``: the verifier warns at ``init_app``; decorated views get ``None`` without our
  code crashing.
* CORS preflights are let through untouched, also under ``DPOP_ENFORCE_ALL``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, g
from flask.views import MethodView

from dpop_middleware.client import DPoPKey
from dpop_middleware.flask import DPoP, current_dpop
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://localhost"
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}




def configured(issuer: TestIssuer, **extra: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks, **extra)
    return app


def signed(issuer: TestIssuer, key: DPoPKey, path: str, method: str = "GET") -> dict[str, str]:
    return dpop_headers(key, method, BASE + path, issuer.token(key.jkt))


def not_registered_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "init_app" in r.getMessage()]


# -- decorators on an app the extension does not check ---------------------------------------------


@pytest.mark.parametrize("form", ["bare", "scopes", "optional"])
def test_decorator_without_init_app_refuses_with_503(caplog: pytest.LogCaptureFixture, form: str) -> None:
    dpop = DPoP()  # never init_app'd
    app = Flask(__name__)
    ran: list[bool] = []
    decorate = {"bare": dpop.required, "scopes": dpop.required(scopes=["write"]), "optional": dpop.optional}[form]

    @app.get("/me")
    @decorate
    def me() -> str:
        ran.append(True)
        return "secret"

    with caplog.at_level(logging.ERROR, logger="dpop_middleware"):
        resp = app.test_client().get("/me")
    assert resp.status_code == 503
    assert b"secret" not in resp.data and ran == []
    errors = not_registered_errors(caplog)
    assert len(errors) == 1
    assert "DPoP.init_app(app)" in errors[0].getMessage() and "me" in errors[0].getMessage()


def test_extension_of_app_a_on_a_view_of_app_b_refuses(
    issuer: TestIssuer, key: DPoPKey, caplog: pytest.LogCaptureFixture
) -> None:
    dpop = DPoP()
    app_a = configured(issuer)
    dpop.init_app(app_a)
    app_b = Flask("b")

    @app_a.get("/me")
    @app_b.get("/me")
    @dpop.required
    def me() -> str:
        return "secret"

    assert app_a.test_client().get("/me", headers=signed(issuer, key, "/me")).status_code == 200
    with caplog.at_level(logging.ERROR, logger="dpop_middleware"):
        resp = app_b.test_client().get("/me", headers=signed(issuer, key, "/me"))
    assert resp.status_code == 503 and resp.data != b"secret"
    assert len(not_registered_errors(caplog)) == 1


def test_decorated_class_based_view_without_init_app_refuses() -> None:
    dpop = DPoP()
    app = Flask(__name__)

    @dpop.required
    class Whole(MethodView):
        def get(self) -> str:
            return "secret"

    class Handler(MethodView):
        @dpop.required(scopes=["write"])
        def post(self) -> str:
            return "secret"

    app.add_url_rule("/whole", view_func=Whole.as_view("whole"))
    app.add_url_rule("/handler", view_func=Handler.as_view("handler"))
    client = app.test_client()
    assert client.get("/whole").status_code == 503
    assert client.post("/handler").status_code == 503


def test_async_view_keeps_working_and_is_guarded(issuer: TestIssuer, key: DPoPKey) -> None:
    dpop = DPoP()
    app = configured(issuer)
    dpop.init_app(app)
    bare = Flask("bare")

    @app.get("/me")
    @bare.get("/me")
    @dpop.required
    async def me() -> dict[str, Any]:
        return {"sub": current_dpop.subject}

    assert app.test_client().get("/me", headers=signed(issuer, key, "/me")).json == {"sub": "alice"}
    assert bare.test_client().get("/me").status_code == 503


def test_decorator_order_outside_route_still_protects(issuer: TestIssuer) -> None:
    """``@dpop.required`` above ``@app.route`` marks the registered function: the hook still checks it."""
    app = configured(issuer)
    dpop = DPoP(app)

    @dpop.required
    @app.get("/me")
    def me() -> str:
        return "secret"

    assert app.test_client().get("/me").status_code == 401


# -- report_only -----------------------------------------------------------------------------------


def test_report_only_warns_at_init_app(issuer: TestIssuer, caplog: pytest.LogCaptureFixture) -> None:
    app = configured(issuer, DPOP_MODE="report_only", DPOP_PUBLIC_URL=BASE)
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        DPoP(app)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("report_only" in message and "no principal" in message for message in warnings)


def test_report_only_decorated_views_get_none_without_crashing(issuer: TestIssuer) -> None:
    app = configured(issuer, DPOP_MODE="report_only", DPOP_ENFORCE_ALL=True)
    dpop = DPoP(app)

    @app.get("/scoped")
    @dpop.required(scopes=["admin"])
    def scoped() -> dict[str, Any]:
        return {"principal": g.dpop is not None, "falsy": not current_dpop}

    @app.get("/enforced")
    def enforced() -> dict[str, Any]:
        return {"principal": g.dpop is not None}

    client = app.test_client()
    resp = client.get("/scoped", headers={"Authorization": "DPoP junk", "DPoP": "junk"})
    assert resp.status_code == 200 and resp.json == {"principal": False, "falsy": True}
    assert client.get("/enforced").json == {"principal": False}


# -- CORS preflight --------------------------------------------------------------------------------


@pytest.mark.parametrize("enforce_all", [False, True])
def test_cors_preflight_is_not_challenged(issuer: TestIssuer, enforce_all: bool) -> None:
    app = configured(issuer, DPOP_ENFORCE_ALL=enforce_all)
    dpop = DPoP(app)

    @app.route("/notes", methods=["POST"])
    @dpop.required(scopes=["notes:write"])
    def notes() -> str:
        return "created"

    @app.route("/explicit", methods=["POST", "OPTIONS"])
    @dpop.required
    def explicit() -> dict[str, Any]:
        return {"principal": g.dpop is not None}

    client = app.test_client()
    resp = client.options("/notes", headers=PREFLIGHT)
    assert resp.status_code == 200 and "WWW-Authenticate" not in resp.headers
    # A view that takes OPTIONS itself never runs for a preflight: Flask's own OPTIONS answer (to
    # which flask-cors would add its headers), so an anonymous request reads nothing of the view.
    resp = client.options("/explicit", headers=PREFLIGHT)
    assert resp.status_code == 200 and resp.data == b""
    assert set(resp.headers["Allow"].split(", ")) >= {"POST", "OPTIONS"}
    # A plain OPTIONS (no Access-Control-Request-Method) and the real request are still checked.
    assert client.options("/explicit", headers={"Origin": "https://app.example"}).status_code == 401
    assert client.post("/notes", headers={"Origin": "https://app.example"}).status_code == 401
