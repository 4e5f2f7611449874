"""The Flask extension beyond the shared case table: configuration, decorators, hooks, proxies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, g
from flask.views import MethodView
from werkzeug.middleware.proxy_fix import ProxyFix

from dpop_middleware import DPoPVerifier, MemoryReplayStore, Mode, NoncePolicy
from dpop_middleware.client import DPoPKey
from dpop_middleware.flask import DPoP, current_dpop
from dpop_middleware.settings import SettingsError
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://localhost"




def config_for(issuer: TestIssuer, **extra: Any) -> dict[str, Any]:
    return {"DPOP_ISSUER": issuer.issuer, "DPOP_AUDIENCE": issuer.audience, "DPOP_JWKS": issuer.jwks, **extra}


def make_app(issuer: TestIssuer, dpop: DPoP | None = None, **config: Any) -> tuple[Flask, DPoP]:
    app = Flask(__name__)
    app.config.update(config_for(issuer, **config))
    dpop = dpop or DPoP()
    dpop.init_app(app)

    @app.get("/me")
    @dpop.required
    def me() -> dict[str, Any]:
        return {"jkt": current_dpop.jkt, "g": g.dpop.jkt}

    @app.get("/open")
    def open_view() -> dict[str, Any]:
        return {"checked": g.dpop is not None, "falsy": not current_dpop}

    return app, dpop


def good(issuer: TestIssuer, key: DPoPKey, path: str, method: str = "GET", base: str = BASE, **kw: Any) -> dict[str, str]:
    return dpop_headers(key, method, base + path, issuer.token(key.jkt, **kw.pop("claims", {})), **kw)


def test_config_builds_the_verifier(issuer: TestIssuer, key: DPoPKey) -> None:
    store = MemoryReplayStore()
    app, dpop = make_app(
        issuer,
        DPOP_MODE="allow_bearer",
        DPOP_NONCE_POLICY="unsafe_methods",
        DPOP_NONCE_KEYRING={"k1": "0123456789abcdef0123"},
        DPOP_ALGORITHMS="ES256 EdDSA",
        DPOP_MAX_AGE=30,
        DPOP_REPLAY_STORE=store,
    )
    with app.app_context():
        verifier = dpop.verifier
    assert verifier.config.mode is Mode.ALLOW_BEARER
    assert verifier.config.nonce_policy is NoncePolicy.UNSAFE_METHODS
    assert verifier.config.algorithms == ("ES256", "EdDSA")
    assert verifier.config.max_age == 30
    assert verifier.replay_store is store
    resp = app.test_client().get("/me", headers=good(issuer, key, "/me"))
    assert resp.status_code == 200 and resp.json == {"jkt": key.jkt, "g": key.jkt}
    # unsafe_methods: this GET carried no nonce, so the response hands out a fresh one.
    assert len(resp.headers.getlist("DPoP-Nonce")) == 1
    assert app.config["DPOP_DEFAULT"] == "required"  # defaults are written into the config (issue 20: secure)


def test_unknown_setting_is_an_error(issuer: TestIssuer) -> None:
    with pytest.raises(ValueError, match="DPOP_ENFORCE_AL"):
        make_app(issuer, DPOP_ENFORCE_AL=True)


def test_missing_validator_is_an_error() -> None:
    app = Flask(__name__)
    with pytest.raises(SettingsError, match="DPOP_TOKEN_VALIDATOR"):
        DPoP(app)
    app.config.update(DPOP_ISSUER="i", DPOP_AUDIENCE="a", DPOP_JWKS="https://issuer.test/jwks")
    with pytest.raises(SettingsError, match="DPOP_JWKS must be a JWKS"):
        DPoP(app)


def test_given_verifier_excludes_verifier_settings(issuer: TestIssuer) -> None:
    app = Flask(__name__)
    app.config["DPOP_MODE"] = "report_only"
    with pytest.raises(ValueError, match="DPOP_MODE"):
        DPoP(app, verifier=DPoPVerifier(issuer.validator()))
    app = Flask(__name__)
    app.config["DPOP_VERIFIER"] = "not a verifier"
    with pytest.raises(SettingsError, match="DPOP_VERIFIER"):
        DPoP(app)
    app.config["DPOP_VERIFIER"] = 42
    with pytest.raises(SettingsError, match="DPOP_VERIFIER must be a DPoPVerifier"):
        DPoP(app)


def test_token_validator_setting(issuer: TestIssuer, key: DPoPKey) -> None:
    app, _ = make_app(
        issuer, DPOP_TOKEN_VALIDATOR=issuer.validator(), DPOP_ISSUER=None, DPOP_AUDIENCE=None, DPOP_JWKS=None
    )
    assert app.test_client().get("/me", headers=good(issuer, key, "/me")).status_code == 200


def test_app_factory_one_extension_several_apps(issuer: TestIssuer, key: DPoPKey) -> None:
    dpop = DPoP()
    other = TestIssuer(issuer="https://other.test")
    app1, _ = make_app(issuer, dpop)
    app2, _ = make_app(other, dpop)
    assert app1.extensions["dpop"] is not app2.extensions["dpop"]
    assert app1.test_client().get("/me", headers=good(issuer, key, "/me")).status_code == 200
    # app2 trusts another issuer: app1's token is not valid there.
    resp = app2.test_client().get("/me", headers=good(issuer, key, "/me"))
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_undecorated_view_is_not_checked_without_enforce_all(issuer: TestIssuer) -> None:
    # Issue 20: no longer the default; DPOP_ENFORCE_ALL=False keeps it for one release (deprecated).
    with pytest.warns(DeprecationWarning, match="DPOP_ENFORCE_ALL"):
        app, _ = make_app(issuer, DPOP_ENFORCE_ALL=False)
    resp = app.test_client().get("/open", headers={"DPoP": "junk"})
    assert resp.json == {"checked": False, "falsy": True}


def test_enforce_all_with_exempt_paths(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer, DPOP_ENFORCE_ALL=True, DPOP_EXEMPT_PATHS=["/open", "/static"])

    @app.get("/open/deep")
    def deep() -> str:
        return "ok"

    @app.get("/openx")
    def openx() -> str:
        return "ok"

    @app.get("/open/required")
    @dpop.required
    def explicit() -> str:
        return "ok"

    c = app.test_client()
    assert c.get("/open").status_code == 200
    assert c.get("/open/deep").status_code == 200
    assert c.get("/openx").status_code == 401
    assert c.get("/open/required").status_code == 401  # the view's own decorator wins
    assert c.get("/no-such-route").status_code == 401  # enforcement does not reveal which routes exist
    assert c.get("/open/required", headers=good(issuer, key, "/open/required")).status_code == 200


def test_method_view_and_scopes_as_string(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer)

    class Items(MethodView):
        decorators = [dpop.required(scopes="items:write")]

        def post(self) -> dict[str, Any]:
            return {"sub": current_dpop.subject}

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    c = app.test_client()
    resp = c.post("/items", headers=good(issuer, key, "/items", "POST"))
    assert resp.status_code == 403 and 'scope="items:write"' in resp.headers["WWW-Authenticate"]
    resp = c.post("/items", headers=good(issuer, key, "/items", "POST", claims={"scope": "items:write"}))
    assert resp.status_code == 200 and resp.json == {"sub": "alice"}


def test_decorator_misuse(issuer: TestIssuer) -> None:
    dpop = DPoP()
    with pytest.raises(TypeError, match="by keyword"):
        dpop.required("write")  # type: ignore[call-overload]


def test_rejection_body_and_headers(issuer: TestIssuer) -> None:
    app, _ = make_app(issuer, DPOP_MODE="allow_bearer")
    resp = app.test_client().get("/me")
    assert resp.status_code == 401
    assert resp.headers.getlist("WWW-Authenticate") == [
        'DPoP algs="ES256 ES384 ES512 EdDSA Ed25519 PS256 PS384 PS512 RS256 RS384 RS512"',
        "Bearer",
    ]
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.mimetype == "application/json"
    assert json.loads(resp.get_data())["error"]


def test_hostile_host_is_400(issuer: TestIssuer, key: DPoPKey) -> None:
    app, _ = make_app(issuer)
    resp = app.test_client().get("/me", headers=dict(good(issuer, key, "/me"), Host="localhost/me?"))
    assert resp.status_code == 400
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


def test_application_root_and_script_name(issuer: TestIssuer, key: DPoPKey) -> None:
    app, _ = make_app(issuer)
    c = app.test_client()
    headers = good(issuer, key, "/mount/me")
    assert c.get("/me", base_url=BASE + "/mount", headers=headers).status_code == 200
    headers = good(issuer, key, "/me")
    assert c.get("/me", base_url=BASE + "/mount", headers=headers).status_code == 401


def test_trusted_proxies_setting(issuer: TestIssuer, key: DPoPKey) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example", "X-Forwarded-For": "203.0.113.9"}
    app, _ = make_app(
        issuer, DPOP_TRUSTED_PROXIES="127.0.0.1", DPOP_TRUSTED_HEADERS=["X-Forwarded-Proto", "X-Forwarded-Host"]
    )
    c = app.test_client()
    headers = dict(good(issuer, key, "/me", base="https://api.example"), **forwarded)
    assert c.get("/me", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    headers = dict(good(issuer, key, "/me", base="https://api.example"), **forwarded)
    assert c.get("/me", headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 401


def test_trusted_headers_default_to_for_and_proto(issuer: TestIssuer, key: DPoPKey) -> None:
    """A trusted proxy that sets X-Forwarded-Proto but passes the client's X-Forwarded-Host through."""
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "203.0.113.9"}
    app, _ = make_app(issuer, DPOP_TRUSTED_PROXIES="127.0.0.1")
    c = app.test_client()
    from_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    headers = dict(good(issuer, key, "/me", base="https://evil.example"), **forwarded)
    assert c.get("/me", headers=headers, environ_base=from_proxy).status_code == 401
    headers = dict(good(issuer, key, "/me", base="https://localhost"), **forwarded)
    assert c.get("/me", headers=headers, environ_base=from_proxy).status_code == 200
    with pytest.raises(SettingsError, match="DPOP_TRUSTED_HEADERS must be a list of forwarding header names"):
        make_app(issuer, DPOP_TRUSTED_HEADERS=["X-Real-IP"])


def test_public_url_setting(issuer: TestIssuer, key: DPoPKey) -> None:
    app, _ = make_app(issuer, DPOP_PUBLIC_URL="https://api.example/v1")
    headers = good(issuer, key, "/me", base="https://api.example/v1")
    assert app.test_client().get("/me", headers=headers).status_code == 200


@pytest.mark.parametrize("also_trusted", [False, True])
def test_proxy_fix_interplay(issuer: TestIssuer, key: DPoPKey, also_trusted: bool) -> None:
    extra = {"DPOP_TRUSTED_PROXIES": "127.0.0.1"} if also_trusted else {}
    app, _ = make_app(issuer, **extra)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
    forwarded = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example",
        "X-Forwarded-Prefix": "/edge",
    }
    headers = dict(good(issuer, key, "/edge/me", base="https://api.example"), **forwarded)
    resp = app.test_client().get("/me", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    # Either way the prefix is applied once: ProxyFix wins when both are configured.
    assert resp.status_code == 200, resp.headers.get("WWW-Authenticate")


def test_current_dpop_outside_request_context() -> None:
    assert not current_dpop  # falsy, like an anonymous request
    with pytest.raises(RuntimeError):
        _ = current_dpop.jkt


def test_init_app_twice_verifies_once(issuer: TestIssuer, key: DPoPKey) -> None:
    app, dpop = make_app(issuer)
    dpop.init_app(app)
    # A second verification of the same proof would be refused as a replay.
    assert app.test_client().get("/me", headers=good(issuer, key, "/me")).status_code == 200
