"""Step-up and scopes at the seams: a mark hidden by another decorator, path demands a view's mark must
not drop, DRF without the middleware, and report_only reporting a failure once (one hostile review's
findings, each a test that failed before its fix)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django_app.harness import django_settings
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier, Outcome
from dpop_middleware.client import DPoPKey
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.flask import DPoP
from dpop_middleware.starlette import DPoPMiddleware, requires_step_up
from dpop_middleware.testing import TestIssuer, dpop_headers

ADMIN_STEP_UP = {"/admin": {"acr_values": "urn:mfa", "max_age": 300}}


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


def signed(issuer: TestIssuer, key: DPoPKey, url: str, **claims: Any) -> dict[str, str]:
    claims.setdefault("scope", "read write")
    return dpop_headers(key, "GET", url, issuer.token(key.jkt, **claims))


def mfa() -> dict[str, Any]:
    """Claims that meet ``ADMIN_STEP_UP``, computed when used (not when the module is collected)."""
    return {"acr": "urn:mfa", "auth_time": int(time.time()) - 10}


# -- Django ---------------------------------------------------------------------------------------


@pytest.fixture
def django_get(issuer: TestIssuer, key: DPoPKey) -> Iterator[Callable[..., Any]]:
    def get(path: str, *, middleware: bool = True, anonymous: bool = False, **claims: Any) -> Any:
        from django.test import Client

        dpop = issuer.django_settings(PATH_STEP_UP=ADMIN_STEP_UP, PATH_SCOPES={"/admin": "write"})
        headers = {} if anonymous else signed(issuer, key, "http://testserver" + path, **claims)
        with django_settings(dpop, middleware=middleware, ROOT_URLCONF="django_app.step_up_urls"):
            return Client().get(path, headers=headers)

    yield get


def test_django_a_mark_hidden_by_another_decorator_is_refused_not_dropped(django_get: Callable[..., Any]) -> None:
    # Without the mark the middleware applies the default (required, no demand): the guard sees that
    # it did not check what the view was marked with. Before, 200 for a token without the acr.
    for path in ("/hidden-step-up", "/hidden-scopes"):
        resp = django_get(path, scope="read")
        assert resp.status_code == 503, (path, resp.status_code)


def test_django_a_views_mark_keeps_the_path_rules_demands(django_get: Callable[..., Any]) -> None:
    assert django_get("/admin/bare").status_code == 401  # @dpop_required does not drop PATH_STEP_UP
    assert django_get("/admin/bare", **mfa()).status_code == 200
    assert django_get("/admin/exempt").status_code == 200  # an exempt mark keeps none


def test_drf_without_the_middleware_applies_the_path_rules_demands(django_get: Callable[..., Any]) -> None:
    assert django_get("/admin/drf", middleware=False).status_code == 401  # before: 200
    assert django_get("/admin/drf", middleware=False, **mfa()).status_code == 200
    assert django_get("/open/drf", middleware=False).status_code == 200
    assert django_get("/admin/drf", middleware=True).status_code == 401


def test_django_a_subclass_or_second_mark_supersedes_the_first_without_a_wiring_error(
    django_get: Callable[..., Any],
) -> None:
    assert django_get("/cbv/anyone", anonymous=True).status_code == 200  # before: 503 mark_not_seen
    assert django_get("/cbv/other", scope="other").status_code == 200
    assert django_get("/cbv/other", scope="admin").status_code == 403
    assert django_get("/fn/optional", anonymous=True).status_code == 200
    assert django_get("/fn/other", scope="other").status_code == 200


def test_drf_scopes_of_a_subclass_demand_despite_an_inherited_exempt_mark(django_get: Callable[..., Any]) -> None:
    for middleware in (True, False):
        assert django_get("/drf/secret", middleware=middleware, scope="read").status_code == 403
        assert django_get("/drf/secret", middleware=middleware, scope="admin").status_code == 200


def test_django_the_middleware_reads_the_mark_of_a_drf_viewset(django_get: Callable[..., Any]) -> None:
    # A router's ViewSet view carries its class as ``cls``, not ``view_class``.
    assert django_get("/vs-optional/", anonymous=True).status_code == 200  # before: 401
    assert django_get("/vs-write/", scope="read").status_code == 403  # before: 200
    assert django_get("/vs-write/", scope="write").status_code == 200


def test_a_view_demand_no_token_can_meet_with_its_path_rule_is_refused_and_logged(
    issuer: TestIssuer, key: DPoPKey, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks,
                      DPOP_PATH_STEP_UP=ADMIN_STEP_UP)  # fmt: skip
    dpop = DPoP(app)

    @app.get("/admin/hw")
    @dpop.required(acr_values="urn:hw")
    def hw() -> dict[str, Any]:
        return {"ok": True}

    client = app.test_client()
    with caplog.at_level("ERROR", logger="dpop_middleware"):
        for acr in ("urn:hw", "urn:mfa"):
            headers = signed(issuer, key, "http://localhost/admin/hw", acr=acr, auth_time=int(time.time()))
            assert client.get("/admin/hw", headers=headers).status_code == 401
    conflicts = [r for r in caplog.records if getattr(r, "dpop_reason", "") == "step_up_conflict"]
    assert len(conflicts) == 1  # once, not per request


# -- Flask ----------------------------------------------------------------------------------------


def _flask(issuer: TestIssuer) -> Flask:
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks,
                      DPOP_PATH_STEP_UP=ADMIN_STEP_UP)  # fmt: skip
    dpop = DPoP(app)

    def no_wraps(view: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper() -> Any:
            return view()

        wrapper.__name__ = view.__name__ + "_wrapped"
        return wrapper

    @app.get("/hidden")
    @no_wraps
    @dpop.required(acr_values="urn:mfa")
    def hidden() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/admin/bare")
    @dpop.required
    def admin_bare() -> dict[str, Any]:
        return {"ok": True}

    return app


def test_flask_a_mark_hidden_by_another_decorator_is_refused_not_dropped(issuer: TestIssuer, key: DPoPKey) -> None:
    client = _flask(issuer).test_client()
    assert client.get("/hidden", headers=signed(issuer, key, "http://localhost/hidden")).status_code == 503


def test_flask_a_views_mark_keeps_the_path_rules_demands(issuer: TestIssuer, key: DPoPKey) -> None:
    client = _flask(issuer).test_client()
    url = "http://localhost/admin/bare"
    assert client.get("/admin/bare", headers=signed(issuer, key, url)).status_code == 401
    assert client.get("/admin/bare", headers=signed(issuer, key, url, **mfa())).status_code == 200


# -- report_only: one failure, one report ---------------------------------------------------------


def _reasons(outcomes: list[Outcome]) -> list[str]:
    return [outcome.reason for outcome in outcomes if outcome.outcome != "accepted"]


def test_starlette_a_path_rule_and_a_decorator_report_one_failure_once(issuer: TestIssuer, key: DPoPKey) -> None:
    seen: list[Outcome] = []
    verifier = DPoPVerifier(issuer.validator(), mode="report_only", on_outcome=seen.append)

    @requires_step_up(acr_values="urn:mfa")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/admin", admin)],
                    middleware=[Middleware(DPoPMiddleware, verifier=verifier, path_step_up=ADMIN_STEP_UP)])  # fmt: skip
    with TestClient(app) as client:
        assert client.get("/admin", headers=signed(issuer, key, "http://testserver/admin")).status_code == 200
    assert _reasons(seen) == ["acr_not_accepted"]


def _report_only_fastapi(issuer: TestIssuer, seen: list[Outcome], **bearer: Any) -> TestClient:
    """A FastAPI route behind ``DPoPMiddleware`` (path step-up on /admin) with ``DPoPBearer(**bearer)``,
    one report_only verifier for both, answering the principal's subject."""
    verifier = DPoPVerifier(issuer.validator(), mode="report_only", on_outcome=seen.append)
    app = FastAPI()
    dpop = DPoPBearer(verifier, **bearer)

    @app.get("/{path:path}")
    async def anything(principal: Any = Depends(dpop)) -> dict[str, Any]:
        return {"sub": principal.subject if principal is not None else None}

    app.add_middleware(DPoPMiddleware, verifier=verifier, path_step_up=ADMIN_STEP_UP)
    return TestClient(app)


def test_fastapi_behind_the_middleware_reports_once_and_sees_no_false_replay(issuer: TestIssuer, key: DPoPKey) -> None:
    seen: list[Outcome] = []
    with _report_only_fastapi(issuer, seen, acr_values="urn:mfa") as client:
        resp = client.get("/admin", headers=signed(issuer, key, "http://testserver/admin"))
    assert resp.status_code == 200 and resp.json() == {"sub": None}
    assert _reasons(seen) == ["acr_not_accepted"]  # before: also "replayed", from verifying twice


def test_report_only_keeps_a_bearer_principal_and_checks_its_scopes(issuer: TestIssuer) -> None:
    seen: list[Outcome] = []
    with _report_only_fastapi(issuer, seen, scopes="admin") as client:
        resp = client.get("/items", headers={"Authorization": f"Bearer {issuer.token(None, scope='read')}"})
    assert resp.status_code == 200 and resp.json() == {"sub": "alice"}  # before: None, the principal lost
    assert _reasons(seen) == ["bearer_token_used", "insufficient_scope"]


def test_a_mounted_required_layer_is_not_skipped_for_an_outer_report_only_report(issuer: TestIssuer) -> None:
    from starlette.routing import Mount

    from dpop_middleware.starlette import requires_scopes

    outer = DPoPVerifier(issuer.validator(), mode="report_only")
    inner = DPoPVerifier(issuer.validator())

    @requires_scopes("admin")
    async def secret(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    inner_app = DPoPMiddleware(Starlette(routes=[Route("/x", secret)]), verifier=inner, exempt_paths=["/x"])
    app = Starlette(routes=[Mount("/inner", app=inner_app)], middleware=[Middleware(DPoPMiddleware, verifier=outer)])
    with TestClient(app) as client:
        assert client.get("/inner/x").status_code == 403  # before: 200


def test_drf_without_the_middleware_reports_once(issuer: TestIssuer) -> None:
    from django.test import Client

    seen: list[Outcome] = []
    dpop = issuer.django_settings(MODE="report_only", ON_OUTCOME=seen.append)
    with django_settings(dpop, middleware=False, ROOT_URLCONF="django_app.step_up_urls"):
        assert Client().get("/drf/required").status_code == 200
    assert _reasons(seen) == ["missing_credentials"]  # before: twice (authentication, then permission)


@pytest.mark.parametrize("value", ["", []])
def test_an_empty_scopes_on_a_view_is_a_mistake(value: Any) -> None:
    from dpop_middleware.django import dpop_required

    with pytest.raises(ValueError, match=r"dpop_required\(scopes=...\) is empty"):
        dpop_required(scopes=value)
    with pytest.raises(TypeError, match="pass scopes by keyword"):
        dpop_required("write")  # type: ignore[call-overload]


def test_django_drf_behind_the_middleware_reports_once(issuer: TestIssuer, key: DPoPKey) -> None:
    from django.test import Client

    seen: list[Outcome] = []
    dpop = issuer.django_settings(PATH_STEP_UP=ADMIN_STEP_UP, MODE="report_only", ON_OUTCOME=seen.append)
    with django_settings(dpop, ROOT_URLCONF="django_app.step_up_urls"):
        resp = Client().get("/admin/drf", headers=signed(issuer, key, "http://testserver/admin/drf"))
    assert resp.status_code == 200
    assert _reasons(seen) == ["acr_not_accepted"]  # before: and "missing_credentials" twice


def test_flask_a_method_mark_may_relax_its_class_mark_without_a_wiring_error(issuer: TestIssuer, key: DPoPKey) -> None:
    from flask.views import MethodView

    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks)
    dpop = DPoP(app)

    @dpop.required(scopes="admin")
    class Items(MethodView):
        @dpop.optional
        def get(self) -> dict[str, Any]:  # the most specific mark: anonymous reads are fine
            return {"ok": True}

        def post(self) -> dict[str, Any]:
            return {"ok": True}

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    client = app.test_client()
    assert client.get("/items").status_code == 200  # the class guard sees the hook chose a mark it knows
    assert client.post("/items").status_code == 401
    headers = dpop_headers(key, "POST", "http://localhost/items", issuer.token(key.jkt, scope="read"))
    assert client.post("/items", headers=headers).status_code == 403


# -- a step-up decorator where no DPoP layer ran refuses ---------------------------------------------


def test_django_a_step_up_view_without_the_middleware_is_refused(django_get: Callable[..., Any]) -> None:
    resp = django_get("/hidden-step-up", middleware=False, **mfa())  # a plain view: DRF is not involved
    assert resp.status_code == 503


def test_flask_a_step_up_view_on_an_app_without_the_extension_is_refused(issuer: TestIssuer, key: DPoPKey) -> None:
    dpop = DPoP()  # never init_app'd on the app below
    app = Flask(__name__)

    @app.get("/admin")
    @dpop.required(acr_values="urn:mfa", max_age=300)
    def admin() -> dict[str, Any]:
        return {"ok": True}

    resp = app.test_client().get("/admin", headers=signed(issuer, key, "http://localhost/admin", **mfa()))
    assert resp.status_code == 503


def test_starlette_requires_step_up_without_a_dpop_layer_refuses_loudly() -> None:
    @requires_step_up(acr_values="urn:mfa")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    with TestClient(Starlette(routes=[Route("/admin", admin)]), raise_server_exceptions=True) as client:
        with pytest.raises(RuntimeError, match="requires_step_up needs DPoPMiddleware or DPoPAuthBackend"):
            client.get("/admin")
