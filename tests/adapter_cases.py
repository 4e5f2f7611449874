"""One table of request cases, run against every framework integration.

Each integration's test module provides a *driver* (see :class:`Driver`) that builds a small app
around a given :class:`DPoPVerifier` with four routes, and sends requests through the framework's
own test client:

* ``GET|POST /protected`` - DPoP required; answers JSON ``{"scheme", "jkt", "sub", "scopes"}``
* ``GET /optional``       - authentication optional; ``{"anonymous": true}`` without credentials
* ``GET /scoped``         - requires scope ``write``
* ``GET /stepped``        - requires a step-up (RFC 9470): ``acr`` ``urn:mfa``, authenticated at most
  300 s ago (:data:`STEP_UP`): a decorator or dependency where the framework has one, else a path rule
* ``GET /health``         - exempt: never checked

``run_case(driver, case)`` then asserts the same status, challenge and identity everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fakes import FakeReplayStore, StoreMode

from dpop_middleware import DPoPPrincipal, DPoPVerifier, NonceKeyring
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers


@dataclass
class Response:
    status: int
    headers: Mapping[str, list[str]]  # lower-case names
    json: Any

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


class Driver(Protocol):
    base_url: str  # scheme://host[:port] the framework's test client uses, e.g. "http://testserver"

    def build(self, verifier: DPoPVerifier) -> None: ...

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response: ...


def identity(principal: DPoPPrincipal | None) -> dict[str, Any]:
    """The JSON body every driver's app answers with: the bound identity, or ``{"anonymous": true}``."""
    if principal is None:
        return {"anonymous": True}
    return {"scheme": principal.scheme, "jkt": principal.jkt, "sub": principal.subject, "scopes": sorted(principal.scopes)}


@dataclass
class Env:
    driver: Driver
    issuer: TestIssuer
    key: DPoPKey

    def url(self, path: str) -> str:
        return self.driver.base_url + path

    def send(self, method: str, path: str, headers: Mapping[str, str] | list[tuple[str, str]]) -> Response:
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        return self.driver.request(method, path, pairs)

    def good(self, method: str = "GET", path: str = "/protected", **kw: Any) -> dict[str, str]:
        token = self.issuer.token(self.key.jkt, **kw.pop("token_claims", {}))
        return dpop_headers(self.key, method, self.url(path), token, **kw)


@dataclass
class Case:
    name: str
    run: Callable[[Env], Response]
    status: int
    error: str | None = None  # error code expected in the DPoP challenge (None: no error parameter)
    identity: bool = False  # expects the bound identity in the body
    scheme: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # DPoPVerifier options
    store: StoreMode | None = None  # a fakes.FakeReplayStore in this mode (None: the verifier's default store)
    check: Callable[[Response, Env], None] | None = None


def _replay(env: Env) -> Response:
    headers = env.good()
    first = env.send("GET", "/protected", headers)
    assert first.status == 200, first
    return env.send("GET", "/protected", headers)


def _nonce_round_trip(env: Env) -> Response:
    token = env.issuer.token(env.key.jkt)
    first = env.send("GET", "/protected", dpop_headers(env.key, "GET", env.url("/protected"), token))
    assert first.status == 401, first
    assert 'error="use_dpop_nonce"' in first.header("www-authenticate")[0]
    nonces = first.header("dpop-nonce")
    assert len(nonces) == 1
    return env.send("GET", "/protected", dpop_headers(env.key, "GET", env.url("/protected"), token, nonce=nonces[0]))


def _other_key_signed(env: Env) -> Response:
    token = env.issuer.token(env.key.jkt)
    thief = DPoPKey.generate()
    return env.send("GET", "/protected", dpop_headers(thief, "GET", env.url("/protected"), token))


def _two_dpop(env: Env) -> Response:
    headers = env.good()
    return env.send("GET", "/protected", [("Authorization", headers["Authorization"]), ("DPoP", headers["DPoP"]), ("DPoP", headers["DPoP"])])


def _has_no_store(resp: Response, env: Env) -> None:
    assert "no-store" in ",".join(resp.header("cache-control"))


def _retry_after(resp: Response, env: Env) -> None:
    assert resp.header("retry-after")
    assert not resp.header("www-authenticate")


def _anonymous(resp: Response, env: Env) -> None:
    assert resp.json == {"anonymous": True}


def _scope_param(resp: Response, env: Env) -> None:
    assert 'scope="write"' in resp.header("www-authenticate")[0]


#: What ``/stepped`` demands, in each driver's own spelling (RFC 9470).
STEP_UP = {"acr_values": "urn:mfa", "max_age": 300}


def _stepped(acr: object, age: float | None) -> Callable[[Env], Response]:
    def run(env: Env) -> Response:
        claims: dict[str, object] = {"acr": acr}
        if age is not None:
            claims["auth_time"] = int(time.time() - age)
        return env.send("GET", "/stepped", env.good(path="/stepped", token_claims=claims))

    return run


def _step_up_challenge(resp: Response, env: Env) -> None:
    challenge = next(c for c in resp.header("www-authenticate") if c.startswith("DPoP"))
    assert 'acr_values="urn:mfa"' in challenge and 'max_age="300"' in challenge, challenge


CASES: list[Case] = [
    Case("good_get", lambda e: e.send("GET", "/protected", e.good()), 200, identity=True, scheme="DPoP"),
    Case("good_post", lambda e: e.send("POST", "/protected", e.good("POST")), 200, identity=True, scheme="DPoP"),
    Case("no_credentials", lambda e: e.send("GET", "/protected", {}), 401, check=_has_no_store),
    Case("stolen_token_other_key", _other_key_signed, 401, "invalid_token"),
    Case(
        "htu_mismatch",
        lambda e: e.send("GET", "/protected", dpop_headers(e.key, "GET", e.url("/other"), e.issuer.token(e.key.jkt))),
        401,
        "invalid_dpop_proof",
    ),
    Case(
        "htm_mismatch",
        lambda e: e.send("POST", "/protected", e.good("GET")),
        401,
        "invalid_dpop_proof",
    ),
    Case(
        "stale_iat",
        lambda e: e.send("GET", "/protected", e.good(iat=time.time() - 3600)),
        401,
        "invalid_dpop_proof",
    ),
    Case("replay", _replay, 401, "invalid_dpop_proof"),
    Case(
        "unbound_token_with_dpop",
        lambda e: e.send("GET", "/protected", dpop_headers(e.key, "GET", e.url("/protected"), e.issuer.token(None))),
        401,
        "invalid_token",
    ),
    Case(
        "bearer_in_required_mode",
        lambda e: e.send("GET", "/protected", {"Authorization": f"Bearer {e.issuer.token(None)}"}),
        401,
    ),
    Case(
        "bound_token_as_bearer",
        lambda e: e.send("GET", "/protected", {"Authorization": f"Bearer {e.issuer.token(e.key.jkt)}"}),
        401,
        "invalid_token",
        options={"mode": "allow_bearer"},
        check=lambda r, e: (
            _assert_in('Bearer error="invalid_token"', r.header("www-authenticate"))
        ),
    ),
    Case(
        "unbound_bearer_allowed",
        lambda e: e.send("GET", "/protected", {"Authorization": f"Bearer {e.issuer.token(None)}"}),
        200,
        scheme="Bearer",
        options={"mode": "allow_bearer"},
    ),
    Case(
        "bearer_and_dpop",
        lambda e: e.send(
            "GET", "/protected", {"Authorization": f"Bearer {e.issuer.token(None)}", "DPoP": e.good()["DPoP"]}
        ),
        400,
        "invalid_request",
    ),
    Case("two_dpop_headers", _two_dpop, 400, "invalid_request"),
    Case(
        "nonce_round_trip",
        _nonce_round_trip,
        200,
        identity=True,
        scheme="DPoP",
        options={"nonce_policy": "always", "nonce_keyring": NonceKeyring({"k1": b"0123456789abcdef0123"})},
    ),
    Case(
        "report_only_bad_proof",
        _other_key_signed,
        200,
        options={"mode": "report_only"},
    ),
    Case("optional_anonymous", lambda e: e.send("GET", "/optional", {}), 200, check=_anonymous),
    Case("optional_with_identity", lambda e: e.send("GET", "/optional", e.good(path="/optional")), 200, identity=True),
    Case(
        "insufficient_scope",
        lambda e: e.send("GET", "/scoped", e.good(path="/scoped")),
        403,
        "insufficient_scope",
        check=_scope_param,
    ),
    Case(
        "step_up_acr_missing",
        _stepped(None, 10),
        401,
        "insufficient_user_authentication",
        check=_step_up_challenge,
    ),
    Case(
        "step_up_authenticated_too_long_ago",
        _stepped("urn:mfa", 3600),
        401,
        "insufficient_user_authentication",
        check=_step_up_challenge,
    ),
    Case("step_up_met", _stepped("urn:mfa", 10), 200, identity=True),
    Case(
        "step_up_hostile_claims",  # acr of the wrong JSON type, an auth_time no float holds: 401, never 500
        lambda e: e.send("GET", "/stepped", e.good(path="/stepped", token_claims={"acr": ["urn:mfa"], "auth_time": 10**400})),
        401,
        "insufficient_user_authentication",
    ),
    Case(
        "scope_granted",
        lambda e: e.send("GET", "/scoped", e.good(path="/scoped", token_claims={"scope": "read write"})),
        200,
        identity=True,
    ),
    Case("exempt_health", lambda e: e.send("GET", "/health", {"DPoP": "garbage", "Authorization": "DPoP x"}), 200),
    Case(
        "garbage_proof",
        lambda e: e.send("GET", "/protected", {"Authorization": "DPoP abc", "DPoP": "not.a.jwt"}),
        401,
        "invalid_dpop_proof",
    ),
    Case("store_down", lambda e: e.send("GET", "/protected", e.good()), 503, store="down", check=_retry_after),
]


def _assert_in(fragment: str, values: list[str]) -> None:
    assert any(fragment in v for v in values), values


CASE_IDS = [case.name for case in CASES]


def run_case(driver: Driver, case: Case) -> Response:
    """Build the app for ``case`` and assert the outcome every integration must share."""
    issuer = TestIssuer(audience="https://api.test")
    options = dict(case.options)
    store = None if case.store is None else FakeReplayStore(case.store)
    verifier = DPoPVerifier(issuer.validator(), replay_store=store, **options)
    driver.build(verifier)
    env = Env(driver, issuer, DPoPKey.generate())
    resp = case.run(env)
    assert resp.status == case.status, (case.name, resp.status, resp.json, dict(resp.headers))
    challenges = resp.header("www-authenticate")
    if resp.status in (400, 401, 403):
        assert challenges, "a 4xx rejection must carry a challenge"
        dpop = [c for c in challenges if c.startswith("DPoP")]
        assert len(dpop) == 1, challenges
        assert 'algs="' in dpop[0]
        if case.error is not None:
            assert any(f'error="{case.error}"' in c for c in challenges), challenges
        else:
            assert not any("error=" in c for c in challenges), challenges
        assert "no-store" in ",".join(resp.header("cache-control"))
    if case.identity:
        assert resp.json["jkt"] == env.key.jkt, resp.json
        assert resp.json["sub"] == "alice"
    if case.scheme is not None:
        assert resp.json["scheme"] == case.scheme
    if case.check is not None:
        case.check(resp, env)
    return resp
