"""Regression tests for holes found in review: each would let a request through, or crash, if reverted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core_support import URL, Env, b64, make_env
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes import FakeReplayStore

from dpop_middleware import (
    DPoPVerifier,
    InvalidDPoPProofError,
    InvalidRequestError,
    NonceKeyring,
    Outcome,
    ReplayStoreUnavailable,
    RequestInfo,
)
from dpop_middleware.core.jose import JOSEFormatError, parse_json_object
from dpop_middleware.core.routes import RoutePolicy

KEYS = {"k1": b"first-key-0123456789"}


def test_heal_iat_proof_first_accepted_in_window_cannot_be_replayed_later() -> None:
    env = make_env(nonce_keyring=NonceKeyring(KEYS, lifetime=300), nonce_policy="heal_iat")
    nonce = NonceKeyring(KEYS, lifetime=300).issue(env.clock.now)
    token = env.token(lifetime=3600)
    request = env.request(token, env.proof(token, nonce=nonce))
    verifier = env.verifier()
    verifier.verify(request)  # iat in the window: accepted without healing
    env.clock.now += 100  # iat now too old, but the nonce still valid: it would heal the replay
    with pytest.raises(InvalidDPoPProofError) as caught:
        verifier.verify(request)
    assert caught.value.reason == "replayed"


@pytest.mark.parametrize("nonce", ["k1.1.\u00e9", "k1.99999999.\u2603\u2603", "k1.1.\x00"])
def test_non_ascii_nonce_is_a_clean_challenge_not_a_crash(nonce: str) -> None:
    env = make_env(nonce_keyring=NonceKeyring(KEYS), nonce_policy="always")
    token = env.token()
    result = env.verifier().authenticate(env.request(token, env.proof(token, nonce=nonce)))
    assert result.rejection is not None and result.rejection.status == 401
    assert 'error="use_dpop_nonce"' in dict(result.rejection.headers)["WWW-Authenticate"]


def _rsa_header(env: Env, n: int, e: int) -> dict[str, Any]:
    def enc(value: int) -> str:
        return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return env.header(alg="RS256", jwk={"kty": "RSA", "n": enc(n), "e": enc(e)})


def test_rsa_exponent_and_modulus_are_capped() -> None:
    env = make_env()
    token = env.token()
    n = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    for header in (_rsa_header(env, n, (1 << 3000) + 1), _rsa_header(env, (1 << 8200) + 1, 65537)):
        proof = _unsigned(header, env.claims(token))  # refused before any signature check
        with pytest.raises(InvalidDPoPProofError) as caught:
            env.verifier().verify(env.request(token, proof))
        assert caught.value.reason == "jwk_rsa_too_costly"


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    import json

    return f"{b64(json.dumps(header))}.{b64(json.dumps(claims))}.{b64(b'x' * 256)}"


def test_comma_joined_authorization_is_several_fields() -> None:
    env = make_env()
    token = env.token()
    request = RequestInfo("GET", URL, [("Authorization", f"DPoP {token}, DPoP {token}"), ("DPoP", env.proof(token))])
    with pytest.raises(InvalidRequestError) as caught:
        env.verifier().verify(request)
    assert caught.value.reason == "multiple_authorization_headers"


def test_async_store_from_sync_verify_is_a_503_not_a_replay() -> None:
    env = make_env()
    token = env.token()
    with pytest.raises(ReplayStoreUnavailable) as caught:
        env.verifier(replay_store=FakeReplayStore(asynchronous=True)).verify(env.request(token, env.proof(token)))
    assert caught.value.reason == "replay_store_misconfigured"
    # ...and through averify the same store works.
    asyncio.run(env.verifier(replay_store=FakeReplayStore(asynchronous=True)).averify(env.request(token, env.proof(token))))


def test_validator_caps_the_verifier_token_cache() -> None:
    env = make_env()
    calls: list[str] = []
    inner = env.issuer.validator()

    class Revocable:
        result_cache_max_ttl = 0  # answers may change at any time (introspection)

        def validate(self, token: str) -> Any:
            calls.append(token)
            return inner.validate(token)

    verifier = env.verifier(token_validator=Revocable())
    token = env.token()
    for _ in range(3):
        verifier.verify(env.request(token, env.proof(token)))
    assert len(calls) == 3


def test_scopes_checked_in_authenticate_report_one_outcome() -> None:
    env = make_env()
    outcomes: list[Outcome] = []
    verifier = DPoPVerifier(env.issuer.validator(), replay_store=env.store, clock=env.clock, on_outcome=outcomes.append)
    token = env.token()
    result = verifier.authenticate(env.request(token, env.proof(token)), scopes=("write",))
    assert result.rejection is not None and result.rejection.status == 403
    assert [(o.outcome, o.reason) for o in outcomes] == [("rejected", "insufficient_scope")]
    outcomes.clear()
    token = env.token(scope="read write")
    assert verifier.authenticate(env.request(token, env.proof(token)), scopes=("write",)).principal is not None
    assert [(o.outcome, o.reason) for o in outcomes] == [("accepted", "ok")]


@pytest.mark.parametrize(
    ("path", "exempt", "required", "scopes"),
    [
        ("/public", True, False, ()),
        ("/public/x", True, False, ()),
        ("/admin/../public", False, True, ("admin",)),  # a router serves this from /admin/{rest}
        ("/public/../admin", False, True, ("admin",)),
        ("/admin/x/../../users", False, True, ("admin",)),
        ("/users", False, True, ()),
    ],
)
def test_path_rules_hold_for_both_readings(path: str, exempt: bool, required: bool, scopes: tuple[str, ...]) -> None:
    # Issue 20: the stricter rule wins where rules overlap, so /public is under exempt_paths alone here
    # (it used to be under optional_paths too, where exempt won).
    rules = RoutePolicy.create(exempt_paths=["/public"], path_scopes={"/admin": "admin"})
    route = rules.decide(path)
    assert (route.exempt, route.required, route.scopes) == (exempt, required, scopes)
    # The same the first time and from the memo.
    assert rules.decide(path) == route


def test_path_decisions_memo_is_bounded_and_keeps_answering() -> None:
    rules = RoutePolicy.create(exempt_paths=["/public"], path_scopes={"/admin": "admin"})
    for i in range(3000):  # a flood of distinct paths
        assert rules.decide(f"/admin/{i}").scopes == ("admin",)
    assert rules.decide.cache_info().currsize <= 1024  # type: ignore[attr-defined]
    assert rules.decide("/public/x").exempt
    assert rules.decide("/public/../admin").scopes == ("admin",)


def test_htu_with_a_lone_surrogate_is_a_401() -> None:
    env = make_env()
    token = env.token()
    result = env.verifier().authenticate(env.request(token, env.proof(token, htu="https://api.example.com/\ud800")))
    assert result.rejection is not None and result.rejection.status == 401


def test_reject_reports_one_outcome_and_honours_report_only() -> None:
    env = make_env()
    outcomes: list[Outcome] = []
    verifier = DPoPVerifier(env.issuer.validator(), clock=env.clock, on_outcome=outcomes.append)
    response = verifier.reject(InvalidRequestError("bad_request_url")).rejection
    assert response is not None and response.status == 400
    assert [(o.outcome, o.reason) for o in outcomes] == [("rejected", "bad_request_url")]
    lenient = DPoPVerifier(env.issuer.validator(), clock=env.clock, mode="report_only")
    assert lenient.reject(InvalidRequestError("bad_request_url")).rejection is None


@pytest.mark.parametrize("token", ["abc", "a-._~+/9==", "x" * 3000])
def test_token68_accepts(token: str) -> None:
    from dpop_middleware.core.request import _is_token68

    assert _is_token68(token)


@pytest.mark.parametrize("token", ["", "=", "a b", "a=b", "ab==c", "é", "a\x00", "a,b", "a\n"])
def test_token68_refuses(token: str) -> None:
    from dpop_middleware.core.request import _is_token68

    assert not _is_token68(token)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'{"a":1}', {"a": 1}),
        (b' \t\n{"a":1}', {"a": 1}),  # surrounding whitespace is JSON too: the full decoder takes it
        (b'{"a":1} \r\n', {"a": 1}),
        (b'{"a":1,"a":2}', {"a": 2}),  # claims: the last of duplicate names wins (RFC 7519 §4)
    ],
)
def test_claims_json_fast_path_agrees_with_the_full_decoder(text: bytes, expected: dict[str, int]) -> None:
    assert parse_json_object(text, allow_duplicates=True) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b'{"a":1}x', "bad_json"),
        (b'{"a":1}{"b":2}', "bad_json"),
        (b"", "bad_json"),
        (b"   ", "bad_json"),
        (b"[1]", "json_not_object"),
        (b'{"a":NaN}', "bad_json"),
        (b'{"a":"\x01"}', "bad_json"),  # raw control character inside a string
        (b"\xff{}", "bad_json"),
    ],
)
def test_claims_json_fast_path_refuses_what_the_full_decoder_refuses(text: bytes, reason: str) -> None:
    with pytest.raises(JOSEFormatError) as info:
        parse_json_object(text, allow_duplicates=True)
    assert info.value.reason == reason


def test_header_json_still_refuses_duplicates_on_the_fast_path() -> None:
    with pytest.raises(JOSEFormatError) as info:
        parse_json_object(b'{"alg":"ES256","alg":"none"}')
    assert info.value.reason == "duplicate_json_member"
    with pytest.raises(JOSEFormatError):
        parse_json_object(b' {"alg":"ES256","alg":"none"}')
