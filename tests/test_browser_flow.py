"""The browser sample's server side without a browser: the issuer's demo-only public client flow
(authorization code + PKCE + dpop_jkt + DPoP proof), the page's files and headers, and the FastAPI
sample's CORS, through the frameworks' test clients (issuer in process)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fakes import TestClock
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.starlette import DPoPMiddleware
from dpop_middleware.testing import TestIssuer, dpop_headers
from sample_projects.common import SampleSettings
from sample_projects.fastapi_api import create_app as create_api
from sample_projects.fastapi_api.app import cors_origins_from_env
from sample_projects.issuer import create_app as create_issuer
from sample_projects.issuer import issuer_settings
from sample_projects.issuer.demo_login import CodeStore, Grant
from sample_projects.issuer.inprocess import InProcessIssuer

ISSUER = "http://127.0.0.1:9000"
REDIRECT = f"{ISSUER}/browser/"
API = "http://127.0.0.1:8003"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return value


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def login_issuer(env: dict[str, str] | None = None) -> InProcessIssuer:
    return InProcessIssuer(issuer_settings(env or {}), demo_login=True, browser_api_url=API)


def authorize(issuer: InProcessIssuer, **overrides: str | None) -> httpx.Response:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "browser-demo",
        "redirect_uri": REDIRECT,
        "scope": "notes:read notes:write",
        "state": "st4te",
        "code_challenge": pkce()[1],
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    sent = {name: value for name, value in params.items() if value is not None}
    response: httpx.Response = issuer.http.get("/authorize", params=sent, follow_redirects=False)
    return response


def redirected(response: httpx.Response) -> dict[str, str]:
    """The authorization response's parameters; asserts it went to the registered redirect URI."""
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"{REDIRECT}?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def get_code(
    issuer: InProcessIssuer, key: DPoPKey, verifier_challenge: tuple[str, str] | None = None
) -> tuple[str, str]:
    verifier, challenge = verifier_challenge or pkce()
    answer = redirected(authorize(issuer, code_challenge=challenge, dpop_jkt=key.jkt))
    assert (answer["state"], answer["iss"]) == ("st4te", ISSUER)
    return answer["code"], verifier


def redeem(
    issuer: InProcessIssuer, key: DPoPKey, code: str, verifier: str, nonce: str | None = None, **form: str
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "browser-demo",
        "code_verifier": verifier,
        **form,
    }
    proof = key.proof("POST", issuer.token_url, nonce=nonce)
    response: httpx.Response = issuer.http.post("/token", data=data, headers={"DPoP": proof})
    return response


@pytest.fixture
def issuer() -> InProcessIssuer:
    return login_issuer()


# -- the flow ---------------------------------------------------------------------------------------


def test_code_flow_issues_a_token_bound_to_the_browser_key(issuer: InProcessIssuer, key: DPoPKey) -> None:
    code, verifier = get_code(issuer, key)
    response = redeem(issuer, key, code, verifier)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["scope"]) == ("DPoP", "notes:read notes:write")
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["iss"]) == ("demo-user", "browser-demo", ISSUER)
    assert claims["cnf"] == {"jkt": key.jkt}

    # The resource server accepts it with a proof from the same key.
    settings = SampleSettings.from_env({}, default_port=8003)
    with TestClient(create_api(settings, validator=issuer.validator(settings))) as api:
        me = api.get("/api/me", headers=dpop_headers(key, "GET", "http://testserver/api/me", body["access_token"]))
    assert me.status_code == 200
    assert me.json()["sub"] == "demo-user" and me.json()["jkt"] == key.jkt


def test_metadata_announces_the_public_client_flow(issuer: InProcessIssuer) -> None:
    meta = issuer.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert meta["grant_types_supported"] == ["client_credentials", "authorization_code"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "none"]
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_a_code_buys_one_token(issuer: InProcessIssuer, key: DPoPKey) -> None:
    code, verifier = get_code(issuer, key)
    assert redeem(issuer, key, code, verifier).status_code == 200
    again = redeem(issuer, key, code, verifier)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_wrong_verifier_or_redirect_spends_the_code(issuer: InProcessIssuer, key: DPoPKey) -> None:
    code, verifier = get_code(issuer, key)
    wrong = redeem(issuer, key, code, pkce()[0])
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert redeem(issuer, key, code, verifier).json()["error"] == "invalid_grant"  # spent
    code, verifier = get_code(issuer, key)
    other_redirect = redeem(issuer, key, code, verifier, redirect_uri=f"{ISSUER}/elsewhere/")
    assert other_redirect.json()["error"] == "invalid_grant"
    assert redeem(issuer, key, code, verifier).json()["error"] == "invalid_grant"


def test_the_code_is_bound_to_the_key_named_at_authorize(issuer: InProcessIssuer, key: DPoPKey) -> None:
    code, verifier = get_code(issuer, key)
    thief = DPoPKey.generate("ES256")
    stolen = redeem(issuer, thief, code, verifier)
    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    # The refused proof did not spend the code: the rightful key still redeems it.
    assert claims_of(redeem(issuer, key, code, verifier).json()["access_token"])["cnf"]["jkt"] == key.jkt


def test_proof_is_required_for_the_public_client(issuer: InProcessIssuer, key: DPoPKey) -> None:
    code, verifier = get_code(issuer, key)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "browser-demo",
        "code_verifier": verifier,
    }
    missing = issuer.http.post("/token", data=form)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_dpop_proof")
    assert redeem(issuer, key, code, verifier).status_code == 200


def test_nonce_challenge_is_answered_with_the_same_code(key: DPoPKey) -> None:
    issuer = login_issuer({"DPOP_NONCE": "always"})
    code, verifier = get_code(issuer, key)
    challenged = redeem(issuer, key, code, verifier)
    assert (challenged.status_code, challenged.json()["error"]) == (400, "use_dpop_nonce")
    answered = redeem(issuer, key, code, verifier, nonce=challenged.headers["dpop-nonce"])
    assert answered.status_code == 200


def test_unknown_public_client_and_no_grant_fall_back_to_invalid_client(issuer: InProcessIssuer, key: DPoPKey) -> None:
    code, verifier = get_code(issuer, key)
    unknown = redeem(issuer, key, code, verifier, client_id="someone-else")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")
    # Without Basic credentials, any other grant is still a client authentication failure.
    other = issuer.http.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"DPoP": key.proof("POST", issuer.token_url)}
    )
    assert (other.status_code, other.json()["error"]) == (401, "invalid_client")


def test_the_demo_login_is_off_unless_asked_for(key: DPoPKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISSUER_DEMO_LOGIN", raising=False)
    off = InProcessIssuer(issuer_settings({}))
    assert off.http.get("/authorize").status_code == 404
    assert off.http.get("/browser/").status_code == 404
    assert "authorization_endpoint" not in off.http.get("/.well-known/oauth-authorization-server").json()
    response = redeem(off, key, "code", pkce()[0])
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    monkeypatch.setenv("ISSUER_DEMO_LOGIN", "on")
    on = InProcessIssuer(issuer_settings({}))
    assert on.http.get("/browser/config.json").json()["api"] == API
    monkeypatch.setenv("ISSUER_DEMO_LOGIN", "yes")
    with pytest.raises(ValueError, match="ISSUER_DEMO_LOGIN"):
        create_issuer(issuer_settings({}))
    with pytest.raises(ValueError, match="BROWSER_API_URL"):
        create_issuer(issuer_settings({}), demo_login=True, browser_api_url="not a url")


# -- the authorization endpoint's refusals ----------------------------------------------------------


@pytest.mark.parametrize(
    "override", [{"client_id": "other"}, {"redirect_uri": "https://evil.example/cb"}, {"redirect_uri": None}]
)
def test_unverified_redirect_is_never_followed(issuer: InProcessIssuer, override: dict[str, str | None]) -> None:
    response = authorize(issuer, **override)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_repeated_parameter_is_refused(issuer: InProcessIssuer) -> None:
    response = issuer.http.get(
        f"/authorize?client_id=browser-demo&client_id=browser-demo&redirect_uri={REDIRECT}", follow_redirects=False
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"scope": "notes:read admin"}, "invalid_scope"),
        ({"dpop_jkt": "not a thumbprint"}, "invalid_request"),
    ],
)
def test_authorization_errors_go_back_to_the_client(
    issuer: InProcessIssuer, override: dict[str, str | None], error: str
) -> None:
    answer = redirected(authorize(issuer, **override))
    assert answer["error"] == error
    assert (answer["state"], answer["iss"]) == ("st4te", ISSUER)
    assert "code" not in answer


def test_default_scope_and_no_dpop_jkt(issuer: InProcessIssuer, key: DPoPKey) -> None:
    verifier, challenge = pkce()
    answer = redirected(authorize(issuer, scope=None, code_challenge=challenge))
    token = redeem(issuer, key, answer["code"], verifier).json()
    assert token["scope"] == "notes:read"
    assert claims_of(token["access_token"])["cnf"]["jkt"] == key.jkt


def test_codes_expire_and_are_bounded() -> None:
    clock = TestClock(1000.0)
    store = CodeStore(clock=clock, lifetime=60, capacity=2)
    grant = Grant("c", "r", "x" * 43, frozenset(), "u", None, store.expiry())
    first = store.issue(grant)
    assert first is not None and store.peek(first) == grant
    assert store.issue(grant) is not None
    assert store.issue(grant) is None  # full
    clock.advance(61)
    assert store.peek(first) is None and store.take(first) is None
    assert store.issue(Grant("c", "r", "x" * 43, frozenset(), "u", None, store.expiry())) is not None  # expired pruned


# -- the page ---------------------------------------------------------------------------------------


def test_page_is_served_with_a_strict_content_security_policy(issuer: InProcessIssuer) -> None:
    page = issuer.http.get("/browser/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and f"connect-src 'self' {API}" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    script = issuer.http.get("/browser/keystore.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "generateKey(ALGORITHM, false" in script.text and "localStorage.setItem" not in script.text
    assert issuer.http.get("/browser", follow_redirects=False).headers["location"] == "/browser/"
    config = issuer.http.get("/browser/config.json").json()
    assert config == {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "client_id": "browser-demo",
        "redirect_uri": REDIRECT,
        "scope": "notes:read notes:write",
        "api": API,
    }


@pytest.mark.parametrize(
    "path", ["/browser/missing.js", "/browser/..%2Fissuer%2Fapp.py", "/browser/README.md", "/browser/.hidden.js"]
)
def test_only_the_page_files_are_served(issuer: InProcessIssuer, path: str) -> None:
    assert issuer.http.get(path).status_code == 404


# -- CORS on the FastAPI sample ---------------------------------------------------------------------

PAGE_ORIGIN = "http://127.0.0.1:9000"


@pytest.fixture
def api(key: DPoPKey) -> TestClient:
    issuer = InProcessIssuer()
    settings = SampleSettings.from_env({}, default_port=8003)
    return TestClient(create_api(settings, validator=issuer.validator(settings), cors_origins=[PAGE_ORIGIN]))


def preflight(client: TestClient, origin: str, method: str, headers: str) -> httpx.Response:
    request_headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }
    response: httpx.Response = client.options("/api/me", headers=request_headers)
    return response


def test_preflight_is_answered_before_any_dpop_check(api: TestClient) -> None:
    response = preflight(api, PAGE_ORIGIN, "GET", "authorization,dpop")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE_ORIGIN
    allowed = {name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "dpop", "content-type"} <= allowed
    assert "www-authenticate" not in response.headers
    refused = preflight(api, "http://evil.example", "GET", "authorization,dpop")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_challenge_and_nonce_are_readable_cross_origin(key: DPoPKey) -> None:
    issuer = InProcessIssuer()
    token = issuer.token(key)
    settings = SampleSettings.from_env({"DPOP_NONCE": "always"}, default_port=8003)
    api = TestClient(create_api(settings, validator=issuer.validator(settings), cors_origins=[PAGE_ORIGIN]))
    url = "http://testserver/api/me"
    challenged = api.get("/api/me", headers={"Origin": PAGE_ORIGIN, **dpop_headers(key, "GET", url, token)})
    assert challenged.status_code == 401
    assert challenged.headers["access-control-allow-origin"] == PAGE_ORIGIN
    exposed = {name.strip().lower() for name in challenged.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"dpop-nonce", "www-authenticate"}
    nonce = challenged.headers["dpop-nonce"]
    answered = api.get("/api/me", headers={"Origin": PAGE_ORIGIN, **dpop_headers(key, "GET", url, token, nonce=nonce)})
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == PAGE_ORIGIN


def test_without_cors_origins_the_api_sends_no_cors_headers(key: DPoPKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORS_ALLOW_ORIGINS", raising=False)
    issuer = InProcessIssuer()
    settings = SampleSettings.from_env({}, default_port=8003)
    api = TestClient(create_api(settings, validator=issuer.validator(settings)))
    response = preflight(api, PAGE_ORIGIN, "GET", "authorization,dpop")
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_from_the_environment() -> None:
    assert cors_origins_from_env({"CORS_ALLOW_ORIGINS": " http://127.0.0.1:9000 , https://app.example.com"}) == [
        "http://127.0.0.1:9000",
        "https://app.example.com",
    ]
    assert cors_origins_from_env({}) == []
    for bad in ("*", "https://app.example.com/", "app.example.com", "ftp://x.example"):
        with pytest.raises(ValueError, match="CORS_ALLOW_ORIGINS"):
            cors_origins_from_env({"CORS_ALLOW_ORIGINS": bad})


@pytest.mark.parametrize("cors_outside", [True, False])
def test_cors_should_wrap_the_dpop_middleware(cors_outside: bool) -> None:
    """A preflight is never challenged, whatever the order (it carries no credentials); but only with
    CORS outside does a 401 carry the CORS headers that let the page read its challenge (and nonce)."""

    async def me(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    cors = Middleware(
        CORSMiddleware, allow_origins=[PAGE_ORIGIN], allow_headers=["Authorization", "DPoP"], allow_methods=["GET"]
    )
    dpop = Middleware(DPoPMiddleware, verifier=DPoPVerifier(TestIssuer().validator()))
    # Starlette's list runs outermost first.
    app = Starlette(routes=[Route("/api/me", me)], middleware=[cors, dpop] if cors_outside else [dpop, cors])
    client = TestClient(app)
    response = preflight(client, PAGE_ORIGIN, "GET", "authorization,dpop")
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == PAGE_ORIGIN
    challenged = client.get("/api/me", headers={"Origin": PAGE_ORIGIN})
    assert challenged.status_code == 401
    assert ("access-control-allow-origin" in challenged.headers) is cors_outside
