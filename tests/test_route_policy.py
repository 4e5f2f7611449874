"""One route-policy model (issue 20 item 2): the same names, default and matching in every adapter.

One table of (rules, path) -> mode runs against the core :class:`RoutePolicy` and through each
adapter with its own test client: Django, Flask, Starlette, FastAPI, WSGI and bare ASGI. A mode is
read from outside: ``required`` answers 401 without credentials; ``optional`` serves an anonymous
request but refuses bad credentials; ``exempt`` never looks at them.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from django_app.harness import django_settings
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from dpop_middleware import DPoPVerifier, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.routes import RoutePolicy, scope_names
from dpop_middleware.core.step_up import StepUp
from dpop_middleware.flask import DPoP
from dpop_middleware.settings import SettingsError
from dpop_middleware.starlette import DPoPMiddleware
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.wsgi import DPoPWSGIMiddleware

Rules = Mapping[str, Any]

# Every rule set below uses the same canonical names in every adapter (upper-cased for settings).
R_DEFAULT: Rules = {"exempt_paths": ["/health"], "optional_paths": ["/public"], "path_scopes": {"/admin": "admin"}}
R_EXEMPT_DEFAULT: Rules = {"default": "exempt", "required_paths": ["/api"], "optional_paths": ["/api/maybe"]}
R_OPTIONAL_DEFAULT: Rules = {
    "default": "optional",
    "exempt_path_patterns": [r"/v\d+/health"],
    "required_paths": ["/admin"],
}
R_OVERLAP: Rules = {"exempt_paths": ["/both"], "required_paths": ["/both"], "optional_paths": ["/both/x", "/opt"]}
RULE_SETS = {"default": R_DEFAULT, "exempt": R_EXEMPT_DEFAULT, "optional": R_OPTIONAL_DEFAULT, "overlap": R_OVERLAP}

TABLE: list[tuple[str, str, str]] = [
    # the default is required: a path no rule names needs credentials
    ("default", "/other", "required"),
    ("default", "/", "required"),
    # segment prefixes: /health covers /health/db, never /healthz
    ("default", "/health", "exempt"),
    ("default", "/health/db", "exempt"),
    ("default", "/healthz", "required"),
    ("default", "/public/x", "optional"),
    ("default", "/publicity", "required"),
    ("default", "/admin", "required"),
    # another default, and rules stricter than it
    ("exempt", "/anything", "exempt"),
    ("exempt", "/api", "required"),
    ("exempt", "/api/x", "required"),
    ("exempt", "/apix", "exempt"),
    ("exempt", "/api/maybe", "required"),  # under required and optional: the stricter wins
    ("optional", "/x", "optional"),
    ("optional", "/admin/x", "required"),
    # patterns match the whole path
    ("optional", "/v2/health", "exempt"),
    ("optional", "/v2/health/db", "optional"),
    ("optional", "/v2/healthz", "optional"),
    # overlapping rules: the stricter wins
    ("overlap", "/both", "required"),
    ("overlap", "/both/x", "required"),
    ("overlap", "/opt", "optional"),
]

# Dot segments: routers read them literally, proxies normalized; a relaxing rule must hold for both.
# (HTTP test clients normalize such URLs before sending them, so these run against the core only;
# the adapters' own tests send them raw.)
DOT_SEGMENTS: list[tuple[str, str, str]] = [
    ("default", "/health/../admin", "required"),
    ("default", "/admin/../health", "required"),
    ("default", "/health/./db", "exempt"),
    ("default", "/public/../health", "optional"),
    ("exempt", "/x/../api", "required"),
]

JUNK = {"Authorization": "DPoP junk", "DPoP": "x.y.z"}


def mode_from(anonymous: int, junk: int) -> str:
    """The mode a route has, from the status without credentials and with bad ones."""
    if junk == 200:
        assert anonymous == 200
        return "exempt"
    assert junk in (400, 401), junk
    if anonymous == 200:
        return "optional"
    assert anonymous == 401, anonymous
    return "required"


# -- one client per adapter: send(path, headers) -> status ---------------------------------------

Send = Callable[[str, Mapping[str, str]], int]


def _starlette_endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # DPoPMiddleware passes it through untouched
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _flask_app(issuer: TestIssuer, rules: Rules) -> Flask:
    app = Flask(__name__)
    app.config.update(issuer.flask_config(**{f"DPOP_{name.upper()}": value for name, value in rules.items()}))
    DPoP(app)

    @app.route("/", defaults={"rest": ""})
    @app.route("/<path:rest>")
    def anything(rest: str) -> dict[str, Any]:
        return {"ok": True}

    return app


class Adapters:
    """Builds each adapter's app for a rule set and sends requests to it."""

    base = {"django": "http://testserver", "flask": "http://localhost", "wsgi": "http://localhost"}

    def __init__(self, issuer: TestIssuer) -> None:
        self.issuer = issuer

    def verifier(self) -> DPoPVerifier:
        return DPoPVerifier(self.issuer.validator())

    def client(self, adapter: str, rules: Rules) -> Iterator[Send]:
        if adapter == "django":
            with django_settings(self.issuer.django_settings(**{n.upper(): v for n, v in rules.items()}),
                                 ROOT_URLCONF="django_app.routes_urls"):  # fmt: skip
                from django.test import Client

                django_client = Client()

                def send_django(path: str, headers: Mapping[str, str]) -> int:
                    return int(django_client.get(path, headers=dict(headers)).status_code)

                yield send_django
            return
        if adapter == "flask":
            flask_client = _flask_app(self.issuer, rules).test_client()
            yield lambda path, headers: flask_client.get(path, headers=dict(headers)).status_code
            return
        if adapter == "wsgi":
            wsgi = WerkzeugClient(DPoPWSGIMiddleware(_wsgi_app, self.verifier(), allowed_hosts=["localhost"], **rules))
            yield lambda path, headers: wsgi.get(path, headers=dict(headers)).status_code
            return
        app: Any
        if adapter == "starlette":
            app = Starlette(
                routes=[StarletteRoute("/{rest:path}", _starlette_endpoint)],
                middleware=[Middleware(DPoPMiddleware, verifier=self.verifier(), **rules)],
            )
        elif adapter == "fastapi":
            app = FastAPI()

            @app.get("/{rest:path}")
            def anything(rest: str) -> dict[str, Any]:
                return {"ok": True}

            app.add_middleware(DPoPMiddleware, verifier=self.verifier(), **rules)
        else:  # bare ASGI
            app = DPoPMiddleware(_bare_asgi, verifier=self.verifier(), **rules)
        with TestClient(app) as test_client:
            yield lambda path, headers: test_client.get(path, headers=dict(headers)).status_code

    def url(self, adapter: str, path: str) -> str:
        return self.base.get(adapter, "http://testserver") + path


ADAPTERS = ["django", "flask", "starlette", "fastapi", "wsgi", "asgi"]


@pytest.mark.parametrize(("rules", "path", "mode"), TABLE + DOT_SEGMENTS, ids=str)
def test_core_decides_the_table(rules: str, path: str, mode: str) -> None:
    assert RoutePolicy.create(**RULE_SETS[rules]).decide(path).mode == mode


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("rules", sorted(RULE_SETS))
def test_every_adapter_decides_the_same_table(adapter: str, rules: str, issuer: TestIssuer) -> None:
    rows = [(path, mode) for name, path, mode in TABLE if name == rules]
    seen = {}
    for send in Adapters(issuer).client(adapter, RULE_SETS[rules]):
        seen = {path: mode_from(send(path, {}), send(path, JUNK)) for path, _ in rows}
    assert seen == dict(rows)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_path_scopes_are_demanded_alike(adapter: str, issuer: TestIssuer, key: DPoPKey) -> None:
    adapters = Adapters(issuer)
    for send in adapters.client(adapter, R_DEFAULT):

        def signed(path: str, scope: str) -> int:
            return send(path, dpop_headers(key, "GET", adapters.url(adapter, path), issuer.token(key.jkt, scope=scope)))

        assert signed("/admin/users", "read") == 403  # insufficient_scope
        assert signed("/admin/users", "read admin") == 200
        assert signed("/other", "read") == 200


# -- names and deprecations ---------------------------------------------------------------------


def test_django_health_exempt_no_longer_opens_healthz(issuer: TestIssuer) -> None:
    for send in Adapters(issuer).client("django", {"exempt_paths": ["/health"]}):
        assert send("/health", {}) == 200
        assert send("/health/db", {}) == 200
        assert send("/healthz", {}) == 401  # it was a regex: ^/health matched /healthz too


def test_django_regex_paths_still_work_with_a_deprecation(issuer: TestIssuer) -> None:
    with pytest.warns(DeprecationWarning, match=r"DPOP\['EXEMPT_PATHS'\].*DPOP\['EXEMPT_PATH_PATTERNS'\]"):
        for send in Adapters(issuer).client("django", {"exempt_paths": [r"^/health"]}):
            assert send("/healthz", {}) == 200  # read as before, re.match: a prefix of the text
            assert send("/other", {}) == 401


def test_django_system_check_warns_about_regex_paths(issuer: TestIssuer) -> None:
    from dpop_middleware.django.checks import check_dpop_settings

    with django_settings(issuer.django_settings(OPTIONAL_PATHS=["/pub", re.compile(r"^/api/v\d+/")])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            messages = check_dpop_settings()
    found = [m for m in messages if m.id == "dpop_middleware.W007"]
    assert len(found) == 1
    assert "DPOP['OPTIONAL_PATHS']" in found[0].msg and "DPOP['OPTIONAL_PATH_PATTERNS']" in found[0].hint


def test_django_pattern_setting_matches_the_whole_path(issuer: TestIssuer) -> None:
    for send in Adapters(issuer).client("django", {"exempt_path_patterns": [r"/health"]}):
        assert send("/health", {}) == 200
        assert send("/healthz", {}) == 401


def test_flask_default_refuses_an_undecorated_route_without_credentials(issuer: TestIssuer) -> None:
    app = _flask_app(issuer, {})
    assert app.config["DPOP_DEFAULT"] == "required"
    assert app.test_client().get("/anything").status_code == 401


@pytest.mark.parametrize(("enforce_all", "mode"), [(False, "exempt"), (True, "required")])
def test_flask_enforce_all_still_works_with_a_deprecation(issuer: TestIssuer, enforce_all: bool, mode: str) -> None:
    with pytest.warns(DeprecationWarning, match=r"DPOP_ENFORCE_ALL is deprecated.*DPOP_DEFAULT"):
        client = _flask_app(issuer, {"enforce_all": enforce_all}).test_client()
    assert mode_from(client.get("/x").status_code, client.get("/x", headers=JUNK).status_code) == mode


def test_flask_enforce_all_and_default_clash(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_ENFORCE_ALL.*DPOP_DEFAULT"):
        _flask_app(issuer, {"enforce_all": True, "default": "optional"})


def test_flask_regex_in_path_setting_names_the_pattern_setting(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_EXEMPT_PATHS.*DPOP_EXEMPT_PATH_PATTERNS"):
        _flask_app(issuer, {"exempt_paths": ["^/health"]})


@pytest.mark.parametrize("adapter", ["starlette", "wsgi"])
@pytest.mark.parametrize(("required", "mode"), [(True, "required"), (False, "optional")])
def test_required_keyword_still_works_with_a_deprecation(
    issuer: TestIssuer, adapter: str, required: bool, mode: str
) -> None:
    with pytest.warns(DeprecationWarning, match=r"required=.* is deprecated, pass default="):
        for send in Adapters(issuer).client(adapter, {"required": required}):
            assert mode_from(send("/x", {}), send("/x", JUNK)) == mode


def test_unknown_keyword_is_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'exempt_path'"):
        DPoPWSGIMiddleware(_wsgi_app, DPoPVerifier(TestIssuer().validator()), exempt_path=["/health"])  # type: ignore[call-arg]


# -- the one scope parser -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("read write", ("read", "write")),
        (["read", "write read"], ("read", "write")),
        (("a",), ("a",)),
        (None, ()),
        ("", ()),
    ],
)
def test_scope_names(value: Any, expected: tuple[str, ...]) -> None:
    assert scope_names(value) == expected


@pytest.mark.parametrize("value", [["read", 3], b"read", 42, {"read": 1}])
def test_scope_names_refuses_non_strings(value: Any) -> None:
    with pytest.raises(TypeError, match="space-separated string or a list of strings"):
        scope_names(value)


def test_a_bad_scope_setting_names_the_key(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_PATH_SCOPES must be a dict"):
        _flask_app(issuer, {"path_scopes": {"/admin": ["admin", 1]}})


# -- step-up (RFC 9470) by path -------------------------------------------------------------------

R_STEP_UP: Rules = {"path_step_up": {"/admin": {"acr_values": "urn:mfa", "max_age": 300}}}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_path_step_up_is_demanded_alike(adapter: str, issuer: TestIssuer, key: DPoPKey) -> None:
    adapters = Adapters(issuer)
    now = int(time.time())
    for send in adapters.client(adapter, R_STEP_UP):

        def signed(path: str, **claims: Any) -> int:
            token = issuer.token(key.jkt, **claims)
            return send(path, dpop_headers(key, "GET", adapters.url(adapter, path), token))

        assert signed("/admin/keys") == 401  # no acr, no auth_time
        assert signed("/admin/keys", acr="urn:pwd", auth_time=now) == 401
        assert signed("/admin/keys", acr="urn:mfa", auth_time=now - 3600) == 401
        assert signed("/admin/keys", acr="urn:mfa", auth_time=now - 10) == 200
        assert signed("/other") == 200  # no rule: no demand


def test_nested_step_up_rules_all_apply() -> None:
    policy = RoutePolicy.create(
        path_step_up={
            "/admin": {"acr_values": ["urn:mfa", "urn:hwk"], "max_age": 3600},
            "/admin/keys": {"acr_values": "urn:hwk urn:other", "max_age": 300},
            "/reports": {"max_age": 60},
        }
    )
    assert policy.decide("/admin/keys/1").step_up == StepUp(("urn:hwk",), 300)
    assert policy.decide("/admin/users").step_up == StepUp(("urn:mfa", "urn:hwk"), 3600)
    assert policy.decide("/reports").step_up == StepUp((), 60)
    assert policy.decide("/adminx").step_up is None


def test_nested_step_up_rules_no_token_could_meet_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"path_step_up\['/admin'\] and path_step_up\['/admin/keys'\] cover"):
        RoutePolicy.create(path_step_up={"/admin": {"acr_values": "urn:mfa"}, "/admin/keys": {"acr_values": "urn:hwk"}})
    # Three rules, any two of them compatible, no acr accepted by all three below /a/b/c.
    three = {"/a": {"acr_values": "x y"}, "/a/b": {"acr_values": "y z"}, "/a/b/c": {"acr_values": "x z"}}
    with pytest.raises(ValueError, match=r"cover '/a/b/c' but accept no acr value in common"):
        RoutePolicy.create(path_step_up=three)


def test_a_step_up_conflict_in_settings_names_the_setting(issuer: TestIssuer) -> None:
    rules = {"/admin": {"acr_values": "urn:mfa"}, "/admin/keys": {"acr_values": "urn:hwk"}}
    with pytest.raises(SettingsError, match=r"^DPOP_PATH_STEP_UP is not usable: path_step_up"):
        _flask_app(issuer, {"path_step_up": rules})


@pytest.mark.parametrize("name", ["path_scopes", "path_step_up"])
def test_a_path_rule_keyword_that_is_not_a_dict_names_the_keyword(issuer: TestIssuer, name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name} must be a dict \{{path prefix: ...\}}, not str"):
        DPoPMiddleware(_bare_asgi, verifier=DPoPVerifier(issuer.validator()), **{name: '{"/admin": "x"}'})


def test_empty_segments_cannot_slip_past_a_path_rule() -> None:
    policy = RoutePolicy.create(exempt_paths=["/health"], path_scopes={"/admin": "admin"},
                                path_step_up={"/admin": {"max_age": 60}})  # fmt: skip
    assert policy.decide("//admin/x").scopes == ("admin",)
    assert policy.decide("/x//admin").scopes == ()
    assert policy.decide("//admin/x").step_up == StepUp((), 60)
    assert policy.decide("//health").mode == "required"  # exempt only if both readings are


def test_a_path_whose_two_readings_demand_incompatible_step_ups_is_refused(issuer: TestIssuer, key: DPoPKey) -> None:
    rules = {"/mfa": {"acr_values": "urn:mfa"}, "/hwk": {"acr_values": "urn:hwk"}}  # not nested: allowed
    demand = RoutePolicy.create(path_step_up=rules).decide("/mfa/../hwk").step_up
    assert demand is not None and demand.unsatisfiable
    verifier = DPoPVerifier(issuer.validator())
    for acr in ("urn:mfa", "urn:hwk"):  # neither reading's acr passes: no choice of reading helps
        principal = verifier.verify(_request_for(issuer, key, "/x", acr=acr))
        result = verifier.step_up(principal, demand)
        assert result.rejection is not None and result.rejection.status == 401


def _request_for(issuer: TestIssuer, key: DPoPKey, path: str, **claims: Any) -> RequestInfo:
    url = "https://api.test" + path
    return RequestInfo("GET", url, list(dpop_headers(key, "GET", url, issuer.token(key.jkt, **claims)).items()))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"/admin": {"acr": "urn:mfa"}}, 'must be a dict with "acr_values" and/or "max_age"'),
        ({"/admin": {}}, "demands nothing: give acr_values, max_age or both"),
        ({"/admin": {"max_age": -5}}, "max_age must be a non-negative integer"),
        ({"/admin": {"max_age": "300"}}, "max_age must be a non-negative integer"),
        ({"/admin": {"acr_values": 7}}, "acr_values must be"),
        ("not json", "a dict {path:"),
    ],
)
def test_a_bad_step_up_setting_names_the_key(issuer: TestIssuer, value: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_PATH_STEP_UP .*" + re.escape(message)):
        _flask_app(issuer, {"path_step_up": value})


def test_step_up_setting_may_be_json_text(issuer: TestIssuer, key: DPoPKey) -> None:
    app = _flask_app(issuer, {"path_step_up": '{"/admin": {"acr_values": "urn:mfa"}}'})
    token = issuer.token(key.jkt, acr="urn:pwd")
    headers = dpop_headers(key, "GET", "http://localhost/admin", token)
    assert app.test_client().get("/admin", headers=headers).status_code == 401


_BAD_ACR = "acr_values must be a space-separated string or a list of acr names"
_BAD_AGE = "max_age must be a non-negative integer of seconds"


@pytest.mark.parametrize(
    ("acr_values", "max_age", "error", "message"),
    [
        (7, None, TypeError, _BAD_ACR),
        (["a b"], None, TypeError, _BAD_ACR),
        (b"urn:mfa", None, TypeError, _BAD_ACR),
        ("urn:mfa", -1, ValueError, _BAD_AGE),
        (None, True, ValueError, _BAD_AGE),
        (None, 1.5, ValueError, _BAD_AGE),
    ],
)
def test_decorators_refuse_a_bad_step_up_at_import(
    acr_values: Any, max_age: Any, error: type[Exception], message: str
) -> None:
    from dpop_middleware.django import dpop_required
    from dpop_middleware.fastapi import DPoPBearer
    from dpop_middleware.starlette import requires_scopes, requires_step_up

    attempts: dict[str, Callable[[], object]] = {
        "dpop_required": lambda: dpop_required(acr_values=acr_values, max_age=max_age),
        "dpop.required": lambda: DPoP().required(acr_values=acr_values, max_age=max_age),
        "requires_step_up": lambda: requires_step_up(acr_values=acr_values, max_age=max_age),
        "requires_scopes": lambda: requires_scopes("write", acr_values=acr_values, max_age=max_age),
        "DPoPBearer": lambda: DPoPBearer(DPoPVerifier(lambda token: {}), acr_values=acr_values, max_age=max_age),
    }
    for name, attempt in attempts.items():
        with pytest.raises(error, match=re.escape(name) + r"\(.*" + re.escape(message)):
            attempt()


def test_requires_step_up_without_a_demand_is_a_type_error() -> None:
    from dpop_middleware.starlette import requires_step_up

    with pytest.raises(TypeError, match="give acr_values, max_age or both"):
        requires_step_up()
