"""The shared adapter case table through FastAPI's ``DPoPBearer`` dependency, plus FastAPI specifics."""

from __future__ import annotations

import time

import pytest
from adapter_cases import CASE_IDS, CASES, Case, Response, run_case
from asgi_apps.apps import fastapi_app, to_case_response
from fakes import TestClock
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier, NonceKeyring
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers


class FastAPIDriver:
    base_url = "http://testserver"

    def __init__(self, exact_errors: bool) -> None:
        self.exact_errors = exact_errors

    def build(self, verifier: DPoPVerifier) -> None:
        self.client = TestClient(fastapi_app(verifier, exact_errors=self.exact_errors))

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        return to_case_response(self.client.request(method, path, headers=headers))


@pytest.mark.parametrize("exact_errors", [False, True], ids=["default_handler", "dpop_handler"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(case: Case, exact_errors: bool) -> None:
    run_case(FastAPIDriver(exact_errors), case)


def test_openapi_lists_the_dpop_security_scheme(issuer: TestIssuer) -> None:
    app = fastapi_app(DPoPVerifier(issuer.validator()))
    spec = TestClient(app).get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["DPoPBearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "DPoP"
    assert "RFC 9449" in scheme["description"]
    assert spec["paths"]["/protected"]["get"]["security"] == [{"DPoPBearer": []}]
    assert spec["paths"]["/scoped"]["get"]["security"] == [{"DPoPBearer": ["write"]}]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_bound_token_as_bearer_folds_challenges_under_default_handler(issuer: TestIssuer) -> None:
    """Without our handler both challenges share one field (RFC 9110 §11.6.1); with it they are apart."""
    key = DPoPKey.generate()
    verifier = DPoPVerifier(issuer.validator(), mode="allow_bearer")
    headers = {"Authorization": f"Bearer {issuer.token(key.jkt)}"}
    folded = TestClient(fastapi_app(verifier)).get("/protected", headers=headers)
    assert folded.status_code == 401
    [field] = folded.headers.get_list("www-authenticate")
    assert field.startswith('DPoP algs="') and ', Bearer error="invalid_token"' in field
    assert folded.json()["detail"]["error"] == "invalid_token"
    exact = TestClient(fastapi_app(verifier, exact_errors=True)).get("/protected", headers=headers)
    challenges = exact.headers.get_list("www-authenticate")
    assert len(challenges) == 2 and challenges[1].startswith('Bearer error="invalid_token"')
    assert exact.json()["error"] == "invalid_token"


def rolled_nonce_exchange(client: TestClient, issuer: TestIssuer, clock: TestClock, path: str) -> list[str]:
    """Get a nonce, move the verifier's clock one nonce step on, use it: the core hands out the next one.

    Returns the ``DPoP-Nonce`` values of the successful response.
    """
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    url = "http://testserver" + path
    first = client.get(path, headers=dpop_headers(key, "GET", url, token, iat=clock.now))
    assert first.status_code == 401
    nonce = first.headers["dpop-nonce"]
    clock.advance(KEYRING.step_seconds)
    second = client.get(path, headers=dpop_headers(key, "GET", url, token, nonce=nonce, iat=clock.now))
    assert second.status_code == 200, second.text
    assert second.json()["jkt"] == key.jkt
    return second.headers.get_list("dpop-nonce")


KEYRING = NonceKeyring({"k1": b"0123456789abcdef0123"})


def nonce_verifier(issuer: TestIssuer, clock: TestClock) -> DPoPVerifier:
    return DPoPVerifier(issuer.validator(), nonce_policy="always", nonce_keyring=KEYRING, clock=clock)


def test_nonce_header_on_success_through_response_dependency(issuer: TestIssuer) -> None:
    clock = TestClock(time.time())
    client = TestClient(fastapi_app(nonce_verifier(issuer, clock)))
    [fresh] = rolled_nonce_exchange(client, issuer, clock, "/protected")
    assert fresh == KEYRING.issue(clock.now)


def test_nonce_header_lost_when_endpoint_returns_a_response(issuer: TestIssuer) -> None:
    """Documented FastAPI limitation: a returned Response object skips the Response dependency."""
    clock = TestClock(time.time())
    client = TestClient(fastapi_app(nonce_verifier(issuer, clock)))
    assert rolled_nonce_exchange(client, issuer, clock, "/raw") == []


def test_security_scopes_merge_with_constructor_scopes(issuer: TestIssuer) -> None:
    from fastapi import FastAPI, Security

    from dpop_middleware.fastapi import DPoPBearer

    verifier = DPoPVerifier(issuer.validator())
    dpop = DPoPBearer(verifier, scopes=["read"])
    app = FastAPI()

    @app.get("/admin")
    async def admin(principal: object = Security(dpop, scopes=["admin"])) -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    key = DPoPKey.generate()
    url = "http://testserver/admin"
    denied = client.get("/admin", headers=dpop_headers(key, "GET", url, issuer.token(key.jkt, scope="read")))
    assert denied.status_code == 403
    assert 'scope="read admin"' in denied.headers["www-authenticate"]
    ok = client.get("/admin", headers=dpop_headers(key, "GET", url, issuer.token(key.jkt, scope="read admin")))
    assert ok.status_code == 200


def test_optional_dependency_still_rejects_bad_credentials(issuer: TestIssuer) -> None:
    client = TestClient(fastapi_app(DPoPVerifier(issuer.validator())))
    resp = client.get("/optional", headers={"Authorization": "DPoP abc", "DPoP": "not.a.jwt"})
    assert resp.status_code == 401
    assert 'error="invalid_dpop_proof"' in resp.headers["www-authenticate"]
