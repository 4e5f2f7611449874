"""RemoteJWKSValidator against a real HTTP authorization server on 127.0.0.1 (tests/authz_server.py).

Time is a fake clock given to the validator, so TTLs, refetch intervals and outages are stepped
through without sleeping; the server's request counters are the observable. Requests that go
through the verifier use real DPoP proofs (real time, as the proof's ``iat`` demands).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from authz_server import AuthzServer
from fakes import TestClock
from servers import free_port

from dpop_middleware import DPoPVerifier, InvalidTokenError, RequestInfo, TokenValidationUnavailable
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import dpop_headers
from dpop_middleware.tokens import RemoteJWKSValidator
from dpop_middleware.tokens._jwks_cache import JWKSCachePolicy, cache_ttl

API = "https://api.test"
URL = "https://api.test/protected"
CLIENT = DPoPKey.generate("ES256")


@pytest.fixture
def authz() -> Iterator[AuthzServer]:
    with AuthzServer() as server:
        server.add_key("ES256", kid="k1")
        yield server


_made: list[RemoteJWKSValidator] = []


@pytest.fixture(autouse=True)
def _close_validators() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def make(authz: AuthzServer, clock: TestClock, **options: Any) -> RemoteJWKSValidator:
    options.setdefault("issuer", authz.issuer)
    options.setdefault("audience", API)
    options.setdefault("timeout", 2.0)
    if "jwks_uri" not in options:
        options["jwks_uri"] = authz.jwks_uri
    elif options["jwks_uri"] is None:
        del options["jwks_uri"]
    validator = RemoteJWKSValidator(clock=clock, **options)
    _made.append(validator)
    return validator


def token(authz: AuthzServer, clock: TestClock, jkt: str | None = CLIENT.jkt, **kwargs: Any) -> str:
    kwargs.setdefault("now", clock())
    return authz.token(jkt, **kwargs)


def reason_of(fn: Any, *args: Any) -> str:
    with pytest.raises((InvalidTokenError, TokenValidationUnavailable)) as info:
        fn(*args)
    return f"{info.value.status}:{info.value.reason}"


def request_for(tok: str, key: DPoPKey = CLIENT) -> RequestInfo:
    return RequestInfo("GET", URL, list(dpop_headers(key, "GET", URL, tok).items()))


# -- fetching, caching, discovery --------------------------------------------------------------------


def test_keys_are_fetched_once_and_reused(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock)
    for _ in range(3):
        claims = v.validate(token(authz, clock))
        assert claims["sub"] == "alice"
    assert authz.count("/jwks") == 1
    assert authz.requests[0].headers["accept"].startswith("application/jwk-set+json")


def test_result_cache_skips_the_signature_check_for_a_reused_token(
    authz: AuthzServer, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dpop_middleware.tokens.remote as remote

    calls = []
    original = remote.verify_access_token
    monkeypatch.setattr(remote, "verify_access_token", lambda *a: calls.append(1) or original(*a))
    v = make(authz, clock)
    tok = token(authz, clock, lifetime=100)
    assert v.validate(tok) == v.validate(tok)
    assert len(calls) == 1
    clock.advance(131)  # cached only until exp; then checked again, and refused once past the leeway
    assert reason_of(v.validate, tok) == "401:token_expired"
    assert len(calls) == 2


def test_result_cache_can_be_disabled(authz: AuthzServer, clock: TestClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import dpop_middleware.tokens.remote as remote

    calls = []
    original = remote.verify_access_token
    monkeypatch.setattr(remote, "verify_access_token", lambda *a: calls.append(1) or original(*a))
    v = make(authz, clock, cache_size=0)
    tok = token(authz, clock)
    v.validate(tok)
    v.validate(tok)
    assert len(calls) == 2


def test_discovery_rfc8414_with_issuer_path(clock: TestClock) -> None:
    with AuthzServer(issuer_path="/tenant") as authz:
        authz.add_key(kid="k1")
        v = make(authz, clock, jwks_uri=None)
        v.validate(token(authz, clock))
        assert authz.count("/.well-known/oauth-authorization-server/tenant") == 1
        assert authz.count("/tenant/.well-known/openid-configuration") == 0
        assert authz.count("/jwks") == 1
        v.validate(token(authz, clock))
        assert authz.count("/.well-known/oauth-authorization-server/tenant") == 1  # discovered once


def test_discovery_falls_back_to_openid_configuration(authz: AuthzServer, clock: TestClock) -> None:
    authz.state.metadata_docs = {"openid"}
    v = make(authz, clock, jwks_uri=None)
    v.validate(token(authz, clock))
    assert authz.count("/.well-known/oauth-authorization-server") == 1
    assert authz.count("/.well-known/openid-configuration") == 1
    assert authz.count("/jwks") == 1


def test_discovery_ignores_metadata_for_another_issuer(authz: AuthzServer, clock: TestClock) -> None:
    authz.state.metadata_overrides = {"oauth": {"issuer": "https://evil.test"}}
    v = make(authz, clock, jwks_uri=None)
    v.validate(token(authz, clock))  # the OpenID document names the right issuer
    assert authz.count("/.well-known/openid-configuration") == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"oauth": {"issuer": "https://evil.test"}, "openid": {"issuer": "https://evil.test"}},
        {"oauth": {"jwks_uri": None}, "openid": {"jwks_uri": 42}},
        {"oauth": {"jwks_uri": "http://evil.example/jwks"}, "openid": {"jwks_uri": "ftp://x/jwks"}},
    ],
    ids=["wrong-issuer", "no-jwks-uri", "insecure-jwks-uri"],
)
def test_unusable_discovery_is_an_outage(authz: AuthzServer, clock: TestClock, overrides: dict[str, Any]) -> None:
    authz.state.metadata_overrides = overrides
    v = make(authz, clock, jwks_uri=None)
    assert reason_of(v.validate, token(authz, clock)) == "503:jwks_unavailable"
    assert authz.count("/jwks") == 0


def test_discovery_documents_missing_is_an_outage(authz: AuthzServer, clock: TestClock) -> None:
    authz.state.metadata_docs = set()
    v = make(authz, clock, jwks_uri=None)
    assert reason_of(v.validate, token(authz, clock)) == "503:jwks_unavailable"


def test_key_rotation_new_kid_appears_old_disappears(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock)
    old = token(authz, clock, kid="k1")
    v.validate(old)
    authz.add_key("ES256", kid="k2")
    clock.advance(31)  # past unknown_kid_interval since the last fetch
    v.validate(token(authz, clock, kid="k2"))  # unknown kid: one refetch finds it
    assert authz.count("/jwks") == 2
    authz.remove_key("k1")
    clock.advance(301)  # the JWKS (max-age=300) expires; the next request refetches
    assert reason_of(v.validate, token(authz, clock, kid="k1")) == "401:token_unknown_key"
    assert authz.count("/jwks") == 3
    v.validate(token(authz, clock, kid="k2"))
    assert authz.count("/jwks") == 3


def test_unknown_kid_refetch_is_rate_limited(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock, unknown_kid_interval=30)
    v.validate(token(authz, clock))
    for i in range(5):
        forged = token(authz, clock, header={"kid": f"nope{i}"})
        assert reason_of(v.validate, forged) == "401:token_unknown_key"
    assert authz.count("/jwks") == 1  # the first fetch was just now: no refetch within the interval
    clock.advance(31)
    assert reason_of(v.validate, token(authz, clock, header={"kid": "nope"})) == "401:token_unknown_key"
    assert authz.count("/jwks") == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 300.0),
        ({"cache-control": "public, max-age=120"}, 120.0),
        ({"cache-control": "max-age=120", "age": "20"}, 100.0),
        ({"cache-control": "max-age=5"}, 60.0),  # raised to min_ttl
        ({"cache-control": "max-age=9999999"}, 86400.0),  # lowered to max_ttl
        ({"cache-control": "no-store"}, 60.0),
        ({"cache-control": "no-cache, max-age=600"}, 60.0),
        ({"cache-control": "s-maxage=900, max-age=600"}, 600.0),
        ({"cache-control": "max-age=junk"}, 300.0),
    ],
)
def test_cache_ttl_from_headers(headers: dict[str, str], expected: float) -> None:
    assert cache_ttl(headers, JWKSCachePolicy()) == expected


def test_cache_control_max_age_is_honoured(authz: AuthzServer, clock: TestClock) -> None:
    authz.state.jwks_headers = {"Cache-Control": "max-age=120"}
    v = make(authz, clock)
    v.validate(token(authz, clock))
    clock.advance(119)
    v.validate(token(authz, clock))
    assert authz.count("/jwks") == 1
    clock.advance(2)
    v.validate(token(authz, clock))
    assert authz.count("/jwks") == 2


def test_ttl_bounds_are_configurable(authz: AuthzServer, clock: TestClock) -> None:
    authz.state.jwks_headers = {"Cache-Control": "max-age=86400"}
    v = make(authz, clock, max_ttl=600, min_ttl=10)
    v.validate(token(authz, clock))
    clock.advance(601)
    v.validate(token(authz, clock))
    assert authz.count("/jwks") == 2


# -- single flight ------------------------------------------------------------------------------------


def _storm_threads(v: RemoteJWKSValidator, tokens: list[str]) -> list[str]:
    barrier = threading.Barrier(len(tokens))

    def one(tok: str) -> str:
        barrier.wait()
        try:
            return str(v.validate(tok)["sub"])
        except (InvalidTokenError, TokenValidationUnavailable) as exc:
            return exc.reason

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return list(pool.map(one, tokens))


def test_unknown_kid_storm_threads_one_fetch(authz: AuthzServer, clock: TestClock) -> None:
    # unknown_kid_interval=0: only single flight stands between 100 concurrent misses and 100 fetches
    v = make(authz, clock, unknown_kid_interval=0)
    v.validate(token(authz, clock))
    authz.add_key(kid="k2")
    authz.state.delays["/jwks"] = 0.3  # keep the fetch in flight while the others arrive
    results = _storm_threads(v, [token(authz, clock, kid="k2") for _ in range(100)])
    assert results == ["alice"] * 100
    assert authz.count("/jwks") == 2


def test_cold_start_storm_threads_one_fetch(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock)
    authz.state.delays["/jwks"] = 0.3
    results = _storm_threads(v, [token(authz, clock) for _ in range(100)])
    assert results == ["alice"] * 100
    assert authz.count("/jwks") == 1


def test_storm_of_forged_kids_threads_one_fetch(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock, unknown_kid_interval=1)
    v.validate(token(authz, clock))
    clock.advance(2)
    authz.state.delays["/jwks"] = 0.3
    results = _storm_threads(v, [token(authz, clock, header={"kid": f"x{i}"}) for i in range(100)])
    assert results == ["token_unknown_key"] * 100
    assert authz.count("/jwks") == 2


async def test_unknown_kid_storm_asyncio_one_fetch(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock, unknown_kid_interval=0)
    await v.avalidate(token(authz, clock))
    authz.add_key(kid="k2")
    authz.state.delays["/jwks"] = 0.3
    tokens = [token(authz, clock, kid="k2") for _ in range(100)]
    results = await asyncio.gather(*(v.avalidate(t) for t in tokens))
    assert [r["sub"] for r in results] == ["alice"] * 100
    assert authz.count("/jwks") == 2
    await v.aclose()


async def test_cold_start_storm_asyncio_one_fetch(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock)
    authz.state.delays["/jwks"] = 0.3
    results = await asyncio.gather(*(v.avalidate(token(authz, clock)) for _ in range(100)))
    assert len(results) == 100
    assert authz.count("/jwks") == 1
    await v.aclose()


async def test_failed_storm_asyncio_one_fetch_all_503(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock)
    authz.state.jwks_status = 500
    results = await asyncio.gather(*(v.avalidate(token(authz, clock)) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, TokenValidationUnavailable) for r in results)
    assert authz.count("/jwks") == 1
    await v.aclose()


async def test_cancelled_fetcher_does_not_strand_waiters(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock, retry_interval=0)
    authz.state.delays["/jwks"] = 0.5
    first = asyncio.ensure_future(v.avalidate(token(authz, clock)))
    while authz.count("/jwks") == 0:  # the first task is now the fetcher, its request in flight
        await asyncio.sleep(0.01)
    second = asyncio.ensure_future(v.avalidate(token(authz, clock)))
    for _ in range(5):  # let the second task reach its wait on the shared fetch
        await asyncio.sleep(0)
    assert not second.done()
    first.cancel()
    with pytest.raises((TokenValidationUnavailable, asyncio.CancelledError)):
        await first
    with pytest.raises(TokenValidationUnavailable):
        await second  # woken by the cancelled fetch, no keys yet: 503, not a hang
    authz.state.delays.clear()
    assert (await v.avalidate(token(authz, clock)))["sub"] == "alice"
    await v.aclose()


# -- outages ------------------------------------------------------------------------------------------


def test_server_down_at_start_then_recovery(clock: TestClock) -> None:
    port = free_port()
    authz = AuthzServer(port=port)
    authz.add_key(kid="k1")
    v = make(authz, clock, retry_interval=5)
    verifier = DPoPVerifier(v)
    result = verifier.authenticate(request_for(token(authz, clock)))
    assert result.rejection is not None and result.rejection.status == 503
    with authz:
        # still within retry_interval of the failed attempt: refused without hammering the server
        result = verifier.authenticate(request_for(token(authz, clock)))
        assert result.rejection is not None and result.rejection.status == 503
        assert authz.count("/jwks") == 0
        clock.advance(5)
        result = verifier.authenticate(request_for(token(authz, clock)))
        assert result.rejection is None and result.principal is not None
        assert result.principal.jkt == CLIENT.jkt
        assert authz.count("/jwks") == 1


def test_server_down_during_operation_keeps_keys_then_recovers(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock, retry_interval=5, max_stale=3600)
    verifier = DPoPVerifier(v)
    assert verifier.authenticate(request_for(token(authz, clock))).rejection is None
    authz.stop()
    clock.advance(301)  # keys expired; the refetch fails; the keys we had still serve
    assert verifier.authenticate(request_for(token(authz, clock))).rejection is None
    # a kid we have never seen may be a key published while we were cut off: 503, not 401
    authz.add_key(kid="k2")
    rejection = verifier.authenticate(request_for(token(authz, clock, kid="k2"))).rejection
    assert rejection is not None and rejection.status == 503
    clock.advance(3600)  # stale beyond max_stale: nothing usable any more
    rejection = verifier.authenticate(request_for(token(authz, clock))).rejection
    assert rejection is not None and rejection.status == 503
    assert ("Retry-After", "5") in rejection.headers
    authz.start()
    clock.advance(5)
    assert verifier.authenticate(request_for(token(authz, clock, kid="k2"))).rejection is None
    assert verifier.authenticate(request_for(token(authz, clock))).rejection is None


async def test_server_down_async_then_recovery(clock: TestClock) -> None:
    authz = AuthzServer()
    authz.add_key(kid="k1")
    v = make(authz, clock, retry_interval=1)
    verifier = DPoPVerifier(v)
    result = await verifier.aauthenticate(request_for(token(authz, clock)))
    assert result.rejection is not None and result.rejection.status == 503
    with authz:
        clock.advance(1)
        result = await verifier.aauthenticate(request_for(token(authz, clock)))
        assert result.rejection is None
    await v.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_slow_server_times_out_to_503(authz: AuthzServer, clock: TestClock, mode: str) -> None:
    authz.state.delays["/jwks"] = 5
    v = make(authz, clock, timeout=0.3)
    verifier = DPoPVerifier(v)
    if mode == "sync":
        result = await asyncio.to_thread(verifier.authenticate, request_for(token(authz, clock)))
    else:
        result = await verifier.aauthenticate(request_for(token(authz, clock)))
    assert result.rejection is not None and result.rejection.status == 503
    await v.aclose()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"not json"),
        (200, b"[]"),
        (200, b'{"keys": "nope"}'),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'),
        (200, b'{"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"}]}'),
        (200, b"\xff\xfe"),
        (500, None),
        (404, None),
        (302, None),
        (200, b'{"keys": [], "pad": "' + b"x" * 4096 + b'"}'),
    ],
)
def test_malformed_jwks_is_an_outage_and_keeps_old_keys(
    authz: AuthzServer, clock: TestClock, status: int, body: bytes | None
) -> None:
    v = make(authz, clock, retry_interval=0, max_response_bytes=2048)
    v.validate(token(authz, clock))  # good keys first
    authz.state.jwks_status, authz.state.jwks_body = status, body
    clock.advance(301)
    assert v.validate(token(authz, clock))["sub"] == "alice"  # refresh failed, old keys kept
    assert authz.count("/jwks") == 2
    cold = make(authz, clock)
    assert reason_of(cold.validate, token(authz, clock)) == "503:jwks_unavailable"


# -- claim checks ------------------------------------------------------------------------------------


OTHER_KEY = DPoPKey.generate("ES256")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"iss": "https://other.test"}, "token_wrong_issuer"),
        ({"aud": "https://other.api"}, "token_wrong_audience"),
        ({"aud": ["https://a", "https://b"]}, "token_wrong_audience"),
        ({"drop": ("aud",)}, "token_wrong_audience"),
        ({"lifetime": -31}, "token_expired"),
        ({"drop": ("exp",)}, "token_exp_invalid"),
        ({"exp": "tomorrow"}, "token_exp_invalid"),
        ({"nbf": 1_800_000_100}, "token_not_yet_valid"),
        ({"iat": 1_800_000_100}, "token_iat_in_future"),
        ({"cnf": "jkt"}, "cnf_malformed"),
        ({"scope": ["read"]}, "token_scope_invalid"),
        ({"drop": ("scope",), "scp": [1]}, "token_scope_invalid"),
        ({"typ": "JWT"}, "token_wrong_typ"),
        ({"header": {"typ": None}}, "token_wrong_typ"),
        ({"key": OTHER_KEY}, "token_bad_signature"),
        ({"header": {"alg": "none"}}, "token_alg_not_allowed"),
        ({"header": {"alg": "HS256"}}, "token_alg_not_allowed"),
        ({"header": {"crit": ["x"]}}, "token_crit_not_supported"),
        ({"header": {"kid": 7}}, "token_malformed"),
    ],
)
def test_claim_checks(authz: AuthzServer, clock: TestClock, kwargs: dict[str, Any], reason: str) -> None:
    v = make(authz, clock)
    assert reason_of(v.validate, token(authz, clock, **kwargs)) == f"401:{reason}"


def test_malformed_token_is_401_without_any_fetch(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock)
    assert reason_of(v.validate, "a.b") == "401:token_malformed"
    assert reason_of(v.validate, "x" * 20000) == "401:token_too_large"
    assert authz.count("/jwks") == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lifetime": -20},  # expired, but within the 30 s leeway
        {"aud": ["https://other", API]},
        {"drop": ("scope",), "scp": ["read", "write"]},
        {"nbf": 1_800_000_020, "iat": 1_800_000_020},
        {"typ": "application/at+jwt"},
    ],
)
def test_accepted_variants(authz: AuthzServer, clock: TestClock, kwargs: dict[str, Any]) -> None:
    assert make(authz, clock).validate(token(authz, clock, **kwargs))["sub"] == "alice"


def test_typ_enforcement_can_be_disabled(authz: AuthzServer, clock: TestClock) -> None:
    assert make(authz, clock, require_typ=False).validate(token(authz, clock, typ="JWT"))["sub"] == "alice"


def test_algorithm_allowlist_and_rsa_keys(authz: AuthzServer, clock: TestClock) -> None:
    authz.add_key("RS256", kid="rsa")
    tok = token(authz, clock, kid="rsa")
    assert make(authz, clock).validate(tok)["sub"] == "alice"
    assert reason_of(make(authz, clock, algorithms=["ES256"]).validate, tok) == "401:token_alg_not_allowed"


def test_key_for_another_alg_is_not_used(authz: AuthzServer, clock: TestClock) -> None:
    # the JWKS says k1 is an ES256 key; a token claiming RS256 with kid k1 finds no candidate key
    tok = token(authz, clock, header={"alg": "RS256"})
    assert reason_of(make(authz, clock).validate, tok) == "401:token_unknown_key"


def test_audience_list_and_leeway_are_configurable(authz: AuthzServer, clock: TestClock) -> None:
    v = make(authz, clock, audience=["https://x", API], leeway=0)
    assert v.validate(token(authz, clock))["sub"] == "alice"
    assert reason_of(v.validate, token(authz, clock, lifetime=-1)) == "401:token_expired"


# -- configuration -----------------------------------------------------------------------------------


def test_plain_http_endpoints_are_refused_unless_loopback_or_allowed() -> None:
    with pytest.raises(ValueError, match="https"):
        RemoteJWKSValidator(issuer="https://as.example", audience=API, jwks_uri="http://as.example/jwks")
    with pytest.raises(ValueError, match="https"):
        RemoteJWKSValidator(issuer="http://as.example", audience=API)
    RemoteJWKSValidator(issuer="https://as.example", audience=API, jwks_uri="http://localhost:1/jwks").close()
    RemoteJWKSValidator(
        issuer="https://as.example", audience=API, jwks_uri="http://as.example/jwks", allow_insecure_http=True
    ).close()


def test_missing_httpx_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"dpop-middleware\[httpx\]"):
        RemoteJWKSValidator(issuer="https://as.example", audience=API)


def test_bad_cache_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RemoteJWKSValidator(issuer="https://as.example", audience=API, min_ttl=100, max_ttl=10)
    with pytest.raises(ValueError):
        RemoteJWKSValidator(issuer="https://as.example", audience=API, retry_interval=-1)
    with pytest.raises(ValueError):
        RemoteJWKSValidator(issuer="https://as.example", audience=API, timeout=0)


# -- end to end: DPoP proofs through the verifier ----------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_end_to_end_binding(authz: AuthzServer, mode: str) -> None:
    v = RemoteJWKSValidator(issuer=authz.issuer, audience=API, jwks_uri=None, timeout=2)
    verifier = DPoPVerifier(v)

    async def auth(request: RequestInfo) -> Any:
        if mode == "sync":
            return await asyncio.to_thread(verifier.authenticate, request)
        return await verifier.aauthenticate(request)

    tok = authz.token(CLIENT.jkt)
    result = await auth(request_for(tok))
    assert result.rejection is None
    assert result.principal.jkt == CLIENT.jkt
    assert result.principal.subject == "alice"
    assert result.principal.scopes == frozenset({"read", "write"})
    # the same token with a proof from another key: bound to someone else
    stolen = await auth(request_for(tok, OTHER_KEY))
    assert stolen.rejection is not None and stolen.rejection.status == 401
    assert b"invalid_token" in stolen.rejection.body or "invalid_token" in str(stolen.rejection.headers)
    # an unbound token presented with DPoP
    unbound = await auth(request_for(authz.token(None)))
    assert unbound.rejection is not None and unbound.rejection.status == 401
    # a bound token presented as Bearer
    bearer = RequestInfo("GET", URL, [("Authorization", f"Bearer {tok}")])
    assert (await auth(bearer)).rejection is not None
    await v.aclose()
    v.close()
