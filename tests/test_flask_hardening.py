"""Flask regressions from the security review: class-based views, dot segments, bad URLs.

* ``@dpop.required`` / ``@dpop.optional`` / ``@dpop.exempt`` on a ``View``/``MethodView`` class or
  on its handler methods are honoured (a class-based view used to stay open).
* ``DPOP_EXEMPT_PATHS`` is matched against the path Flask routes: ``/admin/../public`` reaches the
  ``/admin/<path:rest>`` view, so it is not exempt even though it normalizes to ``/public``.

(The 400 for an environ that cannot be translated is shared with the WSGI middleware and tested in
``test_wsgi_hardening``: werkzeug itself cannot build a Flask request from such an environ.)
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.views import MethodView, View

from dpop_middleware.client import DPoPKey
from dpop_middleware.flask import DPoP, current_dpop
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.verifier import Outcome

BASE = "http://localhost"




def make_app(issuer: TestIssuer, **config: Any) -> tuple[Flask, DPoP]:
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks, **config)
    return app, DPoP(app)


def signed(issuer: TestIssuer, key: DPoPKey, path: str, method: str = "GET", scope: str = "read") -> dict[str, str]:
    return dpop_headers(key, method, BASE + path, issuer.token(key.jkt, scope=scope))


def who() -> dict[str, Any]:
    return {"sub": current_dpop.subject if current_dpop else None}


# -- class-based views -----------------------------------------------------------------------------


def test_decorated_method_view_class_is_protected(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer)

    @dpop.required(scopes=["admin"])
    class Items(MethodView):
        def get(self) -> dict[str, Any]:
            return who()

        def post(self) -> dict[str, Any]:
            return who()

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    c = app.test_client()
    assert c.get("/items").status_code == 401
    assert c.post("/items").status_code == 401
    assert c.head("/items").status_code == 401
    assert c.get("/items", headers=signed(issuer, key, "/items")).status_code == 403
    ok = c.get("/items", headers=signed(issuer, key, "/items", scope="admin"))
    assert ok.status_code == 200 and ok.json == {"sub": "alice"}


def test_decorated_handler_methods_are_protected_per_method(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer, DPOP_DEFAULT="exempt")  # issue 20: undecorated routes are required by default

    class Items(MethodView):
        @dpop.required
        def get(self) -> dict[str, Any]:
            return who()

        @dpop.required(scopes=["write"])
        def post(self) -> dict[str, Any]:
            return who()

        def delete(self) -> dict[str, Any]:  # unmarked: not checked (DPOP_DEFAULT exempt)
            return who()

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    c = app.test_client()
    assert c.get("/items").status_code == 401
    assert c.head("/items").status_code == 401  # HEAD is served by get(), so get()'s mark applies
    assert c.post("/items", headers=signed(issuer, key, "/items", "POST")).status_code == 403
    assert c.post("/items", headers=signed(issuer, key, "/items", "POST", scope="write")).status_code == 200
    assert c.delete("/items").status_code == 200


def test_the_most_specific_mark_wins(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer, DPOP_ENFORCE_ALL=True)

    @dpop.exempt
    class Mixed(MethodView):
        def get(self) -> dict[str, Any]:  # the class's mark: exempt
            return who()

        @dpop.optional
        def put(self) -> dict[str, Any]:
            return who()

        @dpop.required(scopes=["write"])
        def post(self) -> dict[str, Any]:
            return who()

    app.add_url_rule("/mixed", view_func=Mixed.as_view("mixed"))
    c = app.test_client()
    assert c.get("/mixed", headers={"DPoP": "junk"}).json == {"sub": None}  # exempt: not even looked at
    assert c.put("/mixed").json == {"sub": None}
    assert c.put("/mixed", headers={"Authorization": "DPoP junk"}).status_code == 401  # optional, not exempt
    assert c.post("/mixed", headers=signed(issuer, key, "/mixed", "POST")).status_code == 403


def test_plain_view_class_and_dispatch_request(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer)

    class Marked(View):
        @dpop.required
        def dispatch_request(self) -> dict[str, Any]:
            return who()

    @dpop.required
    class ClassMarked(View):
        def dispatch_request(self) -> dict[str, Any]:
            return who()

    app.add_url_rule("/marked", view_func=Marked.as_view("marked"))
    app.add_url_rule("/class-marked", view_func=ClassMarked.as_view("class_marked"))
    c = app.test_client()
    for path in ("/marked", "/class-marked"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers=signed(issuer, key, path)).json == {"sub": "alice"}


def test_a_mark_on_the_registered_view_function_still_counts(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer)

    class Items(MethodView):
        def get(self) -> dict[str, Any]:
            return who()

    app.add_url_rule("/items", view_func=dpop.required(Items.as_view("items")))
    assert app.test_client().get("/items").status_code == 401


# -- path rules see what Flask routes ----------------------------------------------------------------


def routed_app(issuer: TestIssuer) -> Flask:
    app, _ = make_app(issuer, DPOP_ENFORCE_ALL=True, DPOP_EXEMPT_PATHS=["/public"])

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"public": True}

    @app.get("/admin/<path:rest>")
    def admin(rest: str) -> dict[str, Any]:
        return {"admin": True, "rest": rest}

    return app


@pytest.mark.parametrize("path", ["/admin/../public", "/admin/%2E%2E/public", "/admin/%2e%2e/public"])
def test_dot_segments_cannot_borrow_an_exempt_rule(issuer: TestIssuer, path: str) -> None:
    resp = routed_app(issuer).test_client().get(path)
    assert resp.status_code == 401, resp.get_data()
    assert resp.headers["WWW-Authenticate"].startswith("DPoP ")


def test_exempt_path_and_its_subpaths_stay_exempt(issuer: TestIssuer) -> None:
    c = routed_app(issuer).test_client()
    assert c.get("/public").status_code == 200
    assert c.get("/admin/x").status_code == 401


def test_dot_segments_cannot_shed_view_scopes(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer)

    @app.get("/admin/<path:rest>")
    @dpop.required(scopes=["admin"])
    def admin(rest: str) -> dict[str, Any]:
        return {"admin": True}

    path = "/admin/x/%2E%2E/%2E%2E/users"
    resp = app.test_client().get(path, headers=signed(issuer, key, path))
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]



def test_a_view_scope_failure_is_one_outcome(issuer: TestIssuer, key: DPoPKey) -> None:
    outcomes: list[Outcome] = []
    app, dpop = make_app(issuer, DPOP_ON_OUTCOME=outcomes.append)

    @app.get("/admin")
    @dpop.required(scopes=["admin"])
    def admin() -> dict[str, Any]:
        return who()

    assert app.test_client().get("/admin", headers=signed(issuer, key, "/admin")).status_code == 403
    assert [o.outcome for o in outcomes] == ["rejected"]
