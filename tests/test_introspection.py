"""IntrospectionValidator (RFC 7662) against a real HTTP authorization server on 127.0.0.1.

Most tests run twice: ``validate`` (in a worker thread, as a sync framework would call it) and
``avalidate`` (on the test's event loop). The server's request counters show what is cached.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from authz_server import AuthzServer
from fakes import TestClock
from servers import free_port

from dpop_middleware import DPoPVerifier, InvalidTokenError, RequestInfo, TokenValidationUnavailable
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import dpop_headers
from dpop_middleware.tokens import (
    ClientAuth,
    ClientSecretBasic,
    ClientSecretPost,
    IntrospectionValidator,
    PrivateKeyJWT,
)

URL = "https://api.test/protected"
CLIENT = DPoPKey.generate("ES256")
OTHER = DPoPKey.generate("ES256")
T0 = 1_800_000_000.0


@pytest.fixture
def authz() -> Iterator[AuthzServer]:
    with AuthzServer() as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Make = Callable[..., IntrospectionValidator]


@pytest.fixture
async def make(authz: AuthzServer, clock: TestClock) -> AsyncIterator[Make]:
    made: list[IntrospectionValidator] = []

    def factory(**options: Any) -> IntrospectionValidator:
        if "endpoint" not in options:
            options["endpoint"] = authz.introspection_endpoint
        elif options["endpoint"] is None:
            del options["endpoint"]
        if "client_auth" not in options:
            options.setdefault("client_id", "rs")
            options.setdefault("client_secret", "s3cret&:")
        options.setdefault("timeout", 2.0)
        options.setdefault("clock", clock)
        if "verify_audience" not in options:
            options.setdefault("audience", "https://api.test")  # the aud tests/authz_server.py answers
        validator = IntrospectionValidator(**options)
        made.append(validator)
        return validator

    yield factory
    for validator in made:
        await validator.aclose()
        validator.close()


async def check(v: IntrospectionValidator, token: str, mode: str) -> Any:
    if mode == "sync":
        return await asyncio.to_thread(v.validate, token)
    return await v.avalidate(token)


async def reason(v: IntrospectionValidator, token: str, mode: str) -> str:
    with pytest.raises((InvalidTokenError, TokenValidationUnavailable)) as info:
        await check(v, token, mode)
    return f"{info.value.status}:{info.value.reason}"


def active(jkt: str | None = CLIENT.jkt, **claims: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "active": True,
        "token_type": "DPoP" if jkt else "Bearer",
        "exp": int(T0 + 600),
        "iat": int(T0),
        "scope": "read write",
        "client_id": "app",
        "sub": "alice",
        "aud": "https://api.test",  # the audience every validator here is made for
    }
    if jkt:
        answer["cnf"] = {"jkt": jkt}
    answer.update(claims)
    return {k: v for k, v in answer.items() if v is not None}


def opaque(authz: AuthzServer, answer: dict[str, Any] | None = None) -> str:
    token = "op_" + secrets.token_urlsafe(24)
    authz.state.introspection[token] = answer if answer is not None else active()
    return token


# -- the request ------------------------------------------------------------------------------------


async def test_active_token_returns_its_claims(authz: AuthzServer, make: Make, mode: str) -> None:
    token = opaque(authz)
    claims = await check(make(), token, mode)
    assert claims["cnf"] == {"jkt": CLIENT.jkt}
    assert (claims["token_type"], claims["sub"], claims["client_id"], claims["scope"]) == (
        "DPoP",
        "alice",
        "app",
        "read write",
    )
    [req] = authz.requests
    assert req.method == "POST" and req.path == "/introspect"
    assert req.form["token"] == token and req.form["token_type_hint"] == "access_token"
    assert req.headers["accept"] == "application/json"


async def test_client_secret_basic(authz: AuthzServer, make: Make, mode: str) -> None:
    await check(make(auth_method="client_secret_basic"), opaque(authz), mode)
    [req] = authz.requests
    # RFC 6749 §2.3.1: the secret is form-encoded before Base64 ("&" -> %26, ":" -> %3A)
    assert base64.b64decode(req.headers["authorization"][6:]) == b"rs:s3cret%26%3A"
    assert "client_secret" not in req.form


async def test_client_secret_post(authz: AuthzServer, make: Make, mode: str) -> None:
    await check(make(auth_method="client_secret_post"), opaque(authz), mode)
    [req] = authz.requests
    assert req.form["client_id"] == "rs" and req.form["client_secret"] == "s3cret&:"
    assert "authorization" not in req.headers


async def test_strategy_objects_and_private_key_jwt(authz: AuthzServer, make: Make, mode: str) -> None:
    assert isinstance(ClientSecretPost("rs", "s3cret&:"), ClientAuth)
    assert "s3cret" not in repr(ClientSecretBasic("rs", "s3cret&:"))
    await check(make(client_auth=ClientSecretPost("rs", "s3cret&:")), opaque(authz), mode)
    rs_key = DPoPKey.generate("ES256")
    authz.state.client_keys["rs-jwt"] = rs_key
    # The fake server checks the assertion's signature and claims against the real clock.
    import time

    v = make(client_auth=PrivateKeyJWT("rs-jwt", rs_key), clock=time.time)
    token = opaque(authz, active(exp=int(time.time() + 600), iat=int(time.time())))
    assert (await check(v, token, mode))["sub"] == "alice"
    assert authz.requests[-1].form["client_assertion_type"].endswith("jwt-bearer")


async def test_rejected_client_credentials_are_an_outage_not_cached(authz: AuthzServer, make: Make, mode: str) -> None:
    v = make(client_secret="wrong")
    token = opaque(authz)
    assert await reason(v, token, mode) == "503:introspection_failed"
    assert await reason(v, token, mode) == "503:introspection_failed"
    assert authz.count("/introspect") == 2


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        IntrospectionValidator(client_id="a", client_secret="b")
    with pytest.raises(ValueError, match="client_id"):
        IntrospectionValidator(endpoint="https://as.example/introspect")
    with pytest.raises(ValueError, match="unsupported"):
        IntrospectionValidator(endpoint="https://as.example/i", client_id="a", client_secret="b", auth_method="tls")
    with pytest.raises(ValueError, match="https"):
        IntrospectionValidator(endpoint="http://as.example/i", client_id="a", client_secret="b")


async def test_endpoint_by_discovery(authz: AuthzServer, make: Make, mode: str) -> None:
    authz.state.metadata_docs = {"openid"}
    v = make(endpoint=None, issuer=authz.issuer)
    await check(v, opaque(authz), mode)
    await check(v, opaque(authz), mode)
    assert authz.count("/.well-known/openid-configuration") == 1
    assert authz.count("/introspect") == 2


# -- active: false, caching -------------------------------------------------------------------------


async def test_inactive_is_invalid_token_and_cached_briefly(
    authz: AuthzServer, make: Make, clock: TestClock, mode: str
) -> None:
    v = make(negative_ttl=10)
    token = opaque(authz, {"active": False})
    assert await reason(v, token, mode) == "401:token_inactive"
    assert await reason(v, token, mode) == "401:token_inactive"
    assert authz.count("/introspect") == 1
    clock.advance(11)
    assert await reason(v, token, mode) == "401:token_inactive"
    assert authz.count("/introspect") == 2


async def test_unknown_token_is_inactive(authz: AuthzServer, make: Make, mode: str) -> None:
    assert await reason(make(), "never-issued", mode) == "401:token_inactive"


async def test_positive_result_cached_until_exp(authz: AuthzServer, make: Make, clock: TestClock, mode: str) -> None:
    v = make(cache_max_ttl=3600)
    token = opaque(authz, active(exp=int(T0 + 100)))
    await check(v, token, mode)
    clock.advance(99)
    await check(v, token, mode)
    assert authz.count("/introspect") == 1
    clock.advance(2)  # past exp: asked again (and still accepted within the leeway)
    await check(v, token, mode)
    assert authz.count("/introspect") == 2


async def test_positive_cache_capped_by_max_ttl(authz: AuthzServer, make: Make, clock: TestClock, mode: str) -> None:
    v = make(cache_max_ttl=60)
    token = opaque(authz)
    await check(v, token, mode)
    clock.advance(59)
    await check(v, token, mode)
    assert authz.count("/introspect") == 1
    clock.advance(2)
    authz.state.introspection[token] = {"active": False}  # revoked meanwhile
    assert await reason(v, token, mode) == "401:token_inactive"
    assert authz.count("/introspect") == 2


async def test_answer_without_exp_uses_default_ttl(authz: AuthzServer, make: Make, clock: TestClock, mode: str) -> None:
    v = make(default_ttl=30)
    token = opaque(authz, active(exp=None))
    await check(v, token, mode)
    clock.advance(29)
    await check(v, token, mode)
    clock.advance(2)
    await check(v, token, mode)
    assert authz.count("/introspect") == 2


async def test_cache_disabled(authz: AuthzServer, make: Make, mode: str) -> None:
    v = make(cache_size=0)
    token = opaque(authz)
    await check(v, token, mode)
    await check(v, token, mode)
    assert authz.count("/introspect") == 2


async def test_errors_are_never_cached(authz: AuthzServer, make: Make, mode: str) -> None:
    v = make()
    token = opaque(authz)
    authz.state.introspection_status = 500
    assert await reason(v, token, mode) == "503:introspection_failed"
    authz.state.introspection_status = 200
    assert (await check(v, token, mode))["sub"] == "alice"
    assert authz.count("/introspect") == 2


async def test_oversized_token_is_refused_without_a_call(authz: AuthzServer, make: Make, mode: str) -> None:
    assert await reason(make(), "x" * 20000, mode) == "401:token_too_large"
    assert authz.count("/introspect") == 0


# -- malformed answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"not json", "503:introspection_failed"),
        (200, b"\xff\xfe", "503:introspection_failed"),
        (200, b"[]", "503:introspection_failed"),
        (200, b'"active"', "503:introspection_failed"),
        (200, b"{}", "503:introspection_malformed"),
        (200, b'{"active": "true"}', "503:introspection_malformed"),
        (200, b'{"active": 1}', "503:introspection_malformed"),
        (200, b'{"active": null}', "503:introspection_malformed"),
        (500, b'{"active": true}', "503:introspection_failed"),
        (404, b"{}", "503:introspection_failed"),
        (302, b"{}", "503:introspection_failed"),
        (200, b'{"active": true, "pad": "' + b"x" * 4096 + b'"}', "503:authorization_server_response_too_large"),
    ],
)
async def test_malformed_answers(
    authz: AuthzServer, make: Make, mode: str, status: int, body: bytes, expected: str
) -> None:
    v = make(max_response_bytes=2048)
    authz.state.introspection_status, authz.state.introspection_body = status, body
    token = opaque(authz)
    assert await reason(v, token, mode) == expected
    assert await reason(v, token, mode) == expected  # never cached
    assert authz.count("/introspect") == 2


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": int(T0 - 31)}, "token_expired"),
        ({"exp": "soon"}, "token_exp_invalid"),
        ({"nbf": int(T0 + 100)}, "token_not_yet_valid"),
        ({"iat": int(T0 + 100)}, "token_iat_in_future"),
        ({"iat": True}, "token_iat_invalid"),
        ({"iss": "https://other.test"}, "token_wrong_issuer"),
        ({"aud": "https://other.api"}, "token_wrong_audience"),
        ({"aud": None}, "token_wrong_audience"),
        ({"cnf": "jkt"}, "cnf_malformed"),
        ({"cnf": {"x5t#S256": "abc"}}, "token_not_bound"),
        ({"token_type": 5}, "token_type_invalid"),
        ({"scope": ["read"]}, "token_scope_invalid"),
        ({"sub": 42}, "token_sub_invalid"),
        ({"client_id": {}}, "token_client_id_invalid"),
    ],
)
async def test_claim_checks_on_active_answers(
    authz: AuthzServer, make: Make, clock: TestClock, mode: str, claims: dict[str, Any], expected: str
) -> None:
    v = make(issuer="http://127.0.0.1:1", audience=["https://api.test"], negative_ttl=5)
    token = opaque(authz, active(**{"iss": "http://127.0.0.1:1", "aud": "https://api.test", **claims}))
    assert await reason(v, token, mode) == f"401:{expected}"
    assert await reason(v, token, mode) == f"401:{expected}"
    assert authz.count("/introspect") == 1  # a rejected answer is a negative result: cached briefly
    clock.advance(6)
    await reason(v, token, mode)
    assert authz.count("/introspect") == 2


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(T0 - 20)},  # within the leeway
        {"aud": ["https://x", "https://api.test"]},
        {"iss": None},  # iss is optional in introspection answers
        {"token_type": "dpop"},
        {"nbf": int(T0 + 10)},
    ],
)
async def test_accepted_answers(authz: AuthzServer, make: Make, mode: str, claims: dict[str, Any]) -> None:
    v = make(issuer="http://127.0.0.1:1", audience="https://api.test")
    token = opaque(authz, active(**{"iss": "http://127.0.0.1:1", "aud": "https://api.test", **claims}))
    assert (await check(v, token, mode))["sub"] == "alice"


# -- outages ----------------------------------------------------------------------------------------


async def test_server_down_then_recovery_through_the_verifier(make: Make, clock: TestClock, mode: str) -> None:
    authz = AuthzServer(port=free_port())
    v = make(endpoint=authz.introspection_endpoint)
    verifier = DPoPVerifier(v)
    token = opaque(authz)

    async def auth() -> Any:
        request = RequestInfo("GET", URL, list(dpop_headers(CLIENT, "GET", URL, token).items()))
        if mode == "sync":
            return await asyncio.to_thread(verifier.authenticate, request)
        return await verifier.aauthenticate(request)

    result = await auth()
    assert result.rejection is not None and result.rejection.status == 503
    with authz:
        result = await auth()
        assert result.rejection is None and result.principal.jkt == CLIENT.jkt
        authz.stop()
        token = opaque(authz)  # a new token: the verifier's own cache cannot answer for it
        result = await auth()
        assert result.rejection is not None and result.rejection.status == 503
        authz.start()
        result = await auth()
        assert result.rejection is None


async def test_slow_server_times_out_to_503(authz: AuthzServer, make: Make, mode: str) -> None:
    authz.state.delays["/introspect"] = 5
    assert await reason(make(timeout=0.3), opaque(authz), mode) == "503:authorization_server_timeout"


# -- end to end: DPoP proofs through the verifier ---------------------------------------------------


async def test_end_to_end_binding(authz: AuthzServer, make: Make, mode: str) -> None:
    import time

    verifier = DPoPVerifier(make(clock=time.time), mode="allow_bearer")

    async def auth(headers: dict[str, str]) -> Any:
        request = RequestInfo("GET", URL, list(headers.items()))
        if mode == "sync":
            return await asyncio.to_thread(verifier.authenticate, request)
        return await verifier.aauthenticate(request)

    live = {"exp": int(time.time() + 600), "iat": int(time.time())}
    bound = opaque(authz, active(**live))
    ok = await auth(dpop_headers(CLIENT, "GET", URL, bound))
    assert ok.rejection is None
    assert (ok.principal.jkt, ok.principal.subject, ok.principal.client_id) == (CLIENT.jkt, "alice", "app")
    assert ok.principal.scopes == frozenset({"read", "write"})
    stolen = await auth(dpop_headers(OTHER, "GET", URL, bound))
    assert stolen.rejection is not None and stolen.rejection.status == 401
    as_bearer = await auth({"Authorization": f"Bearer {bound}"})
    assert as_bearer.rejection is not None and as_bearer.rejection.status == 401
    unbound = opaque(authz, active(jkt=None, **live))
    assert (await auth(dpop_headers(CLIENT, "GET", URL, unbound))).rejection is not None
    bearer_ok = await auth({"Authorization": f"Bearer {unbound}"})
    assert bearer_ok.rejection is None and bearer_ok.principal.scheme == "Bearer"
    revoked = opaque(authz, {"active": False})
    rejection = (await auth(dpop_headers(CLIENT, "GET", URL, revoked))).rejection
    assert rejection is not None and rejection.status == 401
    assert any("invalid_token" in value for _, value in rejection.headers)
