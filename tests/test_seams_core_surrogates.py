"""Issue 19 §1.2: text that is not valid Unicode (a lone surrogate) is an invalid proof or token, never a 500.

JSON can spell a lone UTF-16 surrogate as an escape (``"\\ud800"``); Python's decoder turns it into
a ``str`` that cannot be encoded as UTF-8, which crashed the replay key (proofs) and the apps
rendering claims (tokens). The JSON boundary refuses it; claims from validators that parse JSON
themselves are checked when the verifier first sees them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from core_support import URL, ath, make_env

from dpop_middleware import DPoPVerifier, RequestInfo
from dpop_middleware.authorization_server import TokenEndpointVerifier
from dpop_middleware.core.jose import JOSEFormatError, parse_json_object
from dpop_middleware.tokens import IntrospectionValidator

LONE = ["\ud800", "ab\udc00cd", "\udbff", "\udfff"]


@pytest.mark.parametrize("mode", ["required", "allow_bearer", "report_only"])
@pytest.mark.parametrize("jti", LONE)
def test_proof_jti_with_lone_surrogate_is_an_invalid_proof_in_every_mode(mode: str, jti: str) -> None:
    env = make_env()
    verifier = env.verifier(mode=mode)
    token = env.token()
    request = env.request(token, env.proof(token, jti=jti))
    result = verifier.authenticate(request)
    if mode == "report_only":
        assert result.rejection is None  # reported, the request goes on: no crash
    else:
        assert result.rejection is not None
        assert result.rejection.status == 401
        assert result.rejection.error.reason == "json_lone_surrogate"
        challenges = [v for k, v in result.rejection.headers if k == "WWW-Authenticate"]
        assert any(c.startswith("DPoP ") and 'error="invalid_dpop_proof"' in c for c in challenges)
    async_result = asyncio.run(verifier.aauthenticate(env.request(token, env.proof(token, jti=jti))))
    assert (async_result.rejection is None) == (mode == "report_only")


def test_proof_with_lone_surrogate_anywhere_in_its_claims_is_refused() -> None:
    env = make_env()
    verifier = env.verifier()
    token = env.token()
    request = env.request(token, env.proof(token, extra={"nested": ["x", {"\udc80key": 1}]}))
    assert verifier.authenticate(request).rejection.error.reason == "json_lone_surrogate"  # type: ignore[union-attr]


def test_proof_with_surrogate_pair_escape_is_accepted() -> None:
    env = make_env()
    token = env.token()
    request = env.request(token, env.proof(token, jti="\U0001f600-pair"))  # json.dumps writes \ud83d\ude00
    principal = env.verifier().verify(request)
    assert principal.jti == "\U0001f600-pair"


def test_token_endpoint_refuses_lone_surrogate_jti_with_400() -> None:
    env = make_env()
    endpoint = TokenEndpointVerifier("https://as.example/token", clock=env.clock)
    claims = {"jti": "\ud800", "htm": "POST", "htu": "https://as.example/token", "iat": int(env.clock.now)}
    proof = env.key.sign(env.header(), claims)
    result = endpoint.authenticate(RequestInfo("POST", "https://as.example/token", [("DPoP", proof)]))
    assert result.rejection is not None
    assert result.rejection.status == 400
    assert json.loads(result.rejection.body)["error"] == "invalid_dpop_proof"
    assert result.rejection.error.reason == "json_lone_surrogate"


@pytest.mark.parametrize(
    "text",
    ['{"a":"\\ud800"}', '{"a":"\\uD800"}', '{"a":"x\\uDFFFy"}', '{"\\udc00":1}', '{"a":[{"b":"\\udbff"}]}',
     '{"a":"\\ud83d"}', '{"a":"\\ude00\\ud83d"}'],
)
def test_parse_json_object_refuses_lone_surrogate_escapes(text: str) -> None:
    with pytest.raises(JOSEFormatError) as info:
        parse_json_object(text.encode())
    assert info.value.reason == "json_lone_surrogate"
    with pytest.raises(JOSEFormatError):
        parse_json_object(text.encode(), allow_duplicates=True)


@pytest.mark.parametrize("text", ['{"a":"\\ud83d\\ude00"}', '{"a":"\\\\ud800"}', '{"a":"\\u00e9\\u20ac"}'])
def test_parse_json_object_keeps_valid_text(text: str) -> None:
    assert parse_json_object(text.encode()) == json.loads(text)


def test_jwt_access_token_with_lone_surrogate_sub_is_malformed() -> None:
    env = make_env()
    token = env.token(sub="\ud800")  # the issuer's json.dumps escapes it
    request = env.request(token, env.proof(token))
    result = env.verifier().authenticate(request)
    assert result.rejection is not None and result.rejection.status == 401
    assert result.rejection.error.reason == "token_malformed"


@pytest.mark.parametrize(
    "claims",
    [{"sub": "\ud800"}, {"scope": "read \udfff"}, {"client_id": "c\udc00"}, {"other": {"deep": ["\ud800"]}},
     {"\ud800": "key"}, {"scp": ["read", "\udbff"]}],
    ids=["sub", "scope", "client_id", "nested", "member_name", "scp_list"],
)
def test_claims_with_lone_surrogate_from_a_callable_validator_are_an_invalid_token(claims: dict[str, Any]) -> None:
    env = make_env()
    token = env.token()
    base = {"cnf": {"jkt": env.key.jkt}}
    verifier = DPoPVerifier(lambda t: {**base, **claims}, clock=env.clock)
    result = verifier.authenticate(env.request(token, env.proof(token)))
    assert result.rejection is not None and result.rejection.status == 401
    assert result.rejection.error.reason == "token_invalid_text"
    assert 'error="invalid_token"' in dict(result.rejection.headers)["WWW-Authenticate"]


def test_introspection_answer_with_lone_surrogate_is_an_invalid_token() -> None:
    env = make_env()
    token = "opaque-token-value"
    answer = {"active": True, "sub": "\ud800", "aud": "https://api.example.com", "cnf": {"jkt": env.key.jkt}}
    body = json.dumps(answer).encode()  # "\ud800" as an escape, as a server would send it
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    validator = IntrospectionValidator(
        endpoint="https://as.test/introspect", client_id="rs", client_secret="s3cret",
        audience="https://api.example.com", http_client=httpx.Client(transport=transport), clock=env.clock,
    )  # fmt: skip
    verifier = DPoPVerifier(validator, clock=env.clock)
    proof = env.key.sign(env.header(), {"jti": "j1", "htm": "GET", "htu": URL, "iat": int(env.clock.now), "ath": ath(token)})
    result = verifier.authenticate(RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", proof)]))
    assert result.rejection is not None and result.rejection.status == 401
    assert result.rejection.error.reason == "token_invalid_text"
