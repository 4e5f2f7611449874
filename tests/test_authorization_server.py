"""The token endpoint side (RFC 9449 §5, §8, §10): RFC examples, real keys, nonces, dpop_jkt, sync and async."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeReplayStore, TestClock

from dpop_middleware import NoncePolicy, RequestInfo
from dpop_middleware.authorization_server import (
    InvalidGrantError,
    TokenEndpointResult,
    TokenEndpointVerifier,
    check_dpop_jkt,
    validate_dpop_jkt,
)
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.errors import InvalidDPoPProofError, InvalidRequestError, UseDPoPNonceError
from dpop_middleware.stores.memory import MemoryReplayStore

VECTORS = json.loads((Path(__file__).parent / "rfc9449_vectors.json").read_text())
TOKEN = VECTORS["token_request_proof"]
REFRESH = VECTORS["refresh_request_proof"]
RESOURCE = VECTORS["resource_request_proof"]
ENDPOINT = TOKEN["url"]
RFC_JKT = VECTORS["proof_jkt"]


def make(clock: TestClock, **options: Any) -> TokenEndpointVerifier:
    # The store runs on the same (fixed) clock, so replay entries expire in RFC time.
    return TokenEndpointVerifier(ENDPOINT, clock=clock, replay_store=MemoryReplayStore(clock=clock), **options)


def token_request(proof: str | None, *more: tuple[str, str], url: str = ENDPOINT, method: str = "POST") -> RequestInfo:
    headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Basic czZCaGRSa3F0Mzo=")]
    if proof is not None:
        headers.append(("DPoP", proof))
    return RequestInfo(method, url, [*headers, *more])


def body(result: TokenEndpointResult) -> dict[str, Any]:
    assert result.rejection is not None
    parsed: dict[str, Any] = json.loads(result.rejection.body)
    return parsed


def headers(result: TokenEndpointResult) -> dict[str, list[str]]:
    assert result.rejection is not None
    out: dict[str, list[str]] = {}
    for name, value in result.rejection.headers:
        out.setdefault(name.lower(), []).append(value)
    return out


# -- RFC 9449 §4.1 / §5 examples ---------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_rfc_token_request_proof_yields_its_jkt(asynchronous: bool) -> None:
    verifier = make(TestClock(TOKEN["iat"]))
    request = token_request(TOKEN["jws"])
    result = await verifier.aauthenticate(request) if asynchronous else verifier.authenticate(request)
    assert result.rejection is None
    assert result.jkt == RFC_JKT
    assert result.binding is not None and result.binding.cnf == {"jkt": RFC_JKT}
    assert result.binding.proof.htu == ENDPOINT and result.binding.proof.htm == "POST"
    assert result.response_headers == ()


def test_rfc_refresh_proof_reuses_the_jti_only_after_the_window() -> None:
    clock = TestClock(TOKEN["iat"])
    verifier = make(clock)
    assert verifier.authenticate(token_request(TOKEN["jws"])).jkt == RFC_JKT
    # The same proof again is a replay, refused as an invalid proof (400).
    again = verifier.authenticate(token_request(TOKEN["jws"]))
    assert again.rejection is not None and again.rejection.status == 400
    assert body(again) == {"error": "invalid_dpop_proof", "error_description": "DPoP proof already used"}
    # The refresh example repeats the jti 44 minutes later: long past the replay window.
    clock.now = REFRESH["iat"]
    assert verifier.verify(token_request(REFRESH["jws"])) is not None


def test_rfc_proof_accepted_by_its_dpop_jkt_and_refused_by_another() -> None:
    verifier = make(TestClock(TOKEN["iat"]))
    assert verifier.authenticate(token_request(TOKEN["jws"]), dpop_jkt=RFC_JKT).jkt == RFC_JKT
    other = DPoPKey.generate().jkt
    verifier = make(TestClock(TOKEN["iat"]))
    result = verifier.authenticate(token_request(TOKEN["jws"]), dpop_jkt=other)
    assert result.rejection is not None and result.rejection.status == 400
    assert body(result)["error"] == "invalid_grant"
    # A refused grant does not burn the proof: the replay store is written last.
    assert verifier.authenticate(token_request(TOKEN["jws"]), dpop_jkt=RFC_JKT).jkt == RFC_JKT


@pytest.mark.parametrize(
    ("request_", "now", "reason"),
    [
        (token_request(RESOURCE["jws"]), TOKEN["iat"], "htm_mismatch"),  # a §7.1 GET proof is not a token request
        (token_request(TOKEN["jws"], method="GET"), TOKEN["iat"], "htm_mismatch"),
        (token_request(TOKEN["jws"]), TOKEN["iat"] + 3600, "iat_too_old"),
        (token_request(TOKEN["jws"]), TOKEN["iat"] - 3600, "iat_in_future"),
        (token_request(TOKEN["jws"][:-4] + "AAAA"), TOKEN["iat"], "bad_signature"),
        (token_request(TOKEN["jws"], ("DPoP", TOKEN["jws"])), TOKEN["iat"], "multiple_dpop_headers"),
        (token_request(TOKEN["jws"] + "," + TOKEN["jws"]), TOKEN["iat"], "multiple_dpop_headers"),
        (token_request(None), TOKEN["iat"], "proof_missing"),
        (token_request("not-a-jws"), TOKEN["iat"], "invalid_dpop_proof"),
    ],
)
async def test_rfc_proof_refusals_are_400_invalid_dpop_proof(request_: RequestInfo, now: float, reason: str) -> None:
    for asynchronous in (False, True):
        verifier = make(TestClock(now))
        result = await verifier.aauthenticate(request_) if asynchronous else verifier.authenticate(request_)
        assert result.rejection is not None
        assert result.rejection.status == 400
        assert body(result)["error"] == "invalid_dpop_proof"
        assert result.rejection.error.reason == reason or reason == "invalid_dpop_proof"
        hdrs = headers(result)
        assert "www-authenticate" not in hdrs  # RFC 6749 §5.2: a JSON error, not a challenge
        assert hdrs["cache-control"] == ["no-store"]
        assert result.rejection.content_type == "application/json"
        with pytest.raises(InvalidDPoPProofError):
            verifier.verify(request_)


def test_htu_is_the_configured_endpoint_not_the_request_url() -> None:
    # Behind a proxy the rebuilt URL may differ; the configured public endpoint is what counts.
    verifier = make(TestClock(TOKEN["iat"]))
    assert verifier.authenticate(token_request(TOKEN["jws"], url="http://10.0.0.5:8080/internal/token")).jkt
    elsewhere = TokenEndpointVerifier("https://server.example.com/other", clock=TestClock(TOKEN["iat"]))
    result = elsewhere.authenticate(token_request(TOKEN["jws"]))
    assert result.rejection is not None and result.rejection.error.reason == "htu_mismatch"
    # Without endpoint_url, the request's URL (as the adapter rebuilt it) is used.
    default = TokenEndpointVerifier(clock=TestClock(TOKEN["iat"]))
    assert default.authenticate(token_request(TOKEN["jws"])).jkt == RFC_JKT
    assert default.authenticate(token_request(TOKEN["jws"], url="https://server.example.com/tok")).rejection


def test_bad_request_url_is_invalid_request() -> None:
    verifier = TokenEndpointVerifier(clock=TestClock(TOKEN["iat"]))
    result = verifier.authenticate(token_request(TOKEN["jws"], url="https://bad host/token"))
    assert result.rejection is not None and result.rejection.status == 400
    assert body(result)["error"] == "invalid_request"


# -- real keys, optional DPoP, nonces ---------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256"])
def test_real_keys(alg: str) -> None:
    key = DPoPKey.generate(alg)
    verifier = TokenEndpointVerifier("https://as.test/token")
    proof = key.proof("POST", "https://as.test/token?ignored=1")
    result = verifier.authenticate(RequestInfo("POST", "https://as.test/token", [("DPoP", proof)]), dpop_jkt=key.jkt)
    assert result.rejection is None and result.jkt == key.jkt


def test_a_proof_with_ath_is_still_fine_and_required_can_be_relaxed() -> None:
    key = DPoPKey.generate()
    verifier = TokenEndpointVerifier("https://as.test/token", require_dpop=False)
    # No proof and none required: the server may issue a Bearer token.
    plain = verifier.authenticate(RequestInfo("POST", "https://as.test/token", []))
    assert plain.rejection is None and plain.binding is None and plain.jkt is None
    # ... unless the grant was bound to a key at the authorization endpoint.
    bound = verifier.authenticate(RequestInfo("POST", "https://as.test/token", []), dpop_jkt=key.jkt)
    assert bound.rejection is not None and bound.rejection.error.reason == "proof_missing"
    empty = verifier.authenticate(RequestInfo("POST", "https://as.test/token", [("DPoP", " ")]))
    assert empty.binding is None and empty.rejection is None


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_nonce_round_trip(asynchronous: bool) -> None:
    clock = TestClock(1_700_000_000)
    key = DPoPKey.generate()
    verifier = TokenEndpointVerifier(
        "https://as.test/token", clock=clock, nonce_policy="always", nonce_keyring={"k1": "0123456789abcdef0123"}
    )
    assert verifier.config.nonce_policy is NoncePolicy.ALWAYS

    async def run(proof: str) -> TokenEndpointResult:
        request = RequestInfo("POST", "https://as.test/token", [("DPoP", proof)])
        return await verifier.aauthenticate(request) if asynchronous else verifier.authenticate(request)

    first = await run(key.proof("POST", "https://as.test/token", iat=clock.now))
    assert first.rejection is not None and first.rejection.status == 400
    assert body(first) == {
        "error": "use_dpop_nonce",
        "error_description": "Authorization server requires nonce in DPoP proof",
    }
    nonce = headers(first)["dpop-nonce"]
    assert len(nonce) == 1 and isinstance(first.rejection.error, UseDPoPNonceError)

    ok = await run(key.proof("POST", "https://as.test/token", iat=clock.now, nonce=nonce[0]))
    assert ok.rejection is None and ok.jkt == key.jkt
    assert ok.response_headers == ()  # the nonce is current: nothing new to hand out

    # One step later the nonce still works, and a fresh one comes back on the success response (§8).
    clock.now += verifier.config.nonce_keyring.step_seconds
    later = await run(key.proof("POST", "https://as.test/token", iat=clock.now, nonce=nonce[0]))
    assert later.rejection is None
    assert [name for name, _ in later.response_headers] == ["DPoP-Nonce"]
    assert later.response_headers[0][1] != nonce[0]

    forged = await run(key.proof("POST", "https://as.test/token", iat=clock.now, nonce="k1.1.AAAA"))
    assert forged.rejection is not None and body(forged)["error"] == "use_dpop_nonce"


async def test_replay_store_failures_fail_closed() -> None:
    request = token_request(TOKEN["jws"])
    broken = TokenEndpointVerifier(ENDPOINT, clock=TestClock(TOKEN["iat"]), replay_store=FakeReplayStore("error"))
    for result in (broken.authenticate(request), await broken.aauthenticate(request)):
        assert result.rejection is not None and result.rejection.status == 503
        assert body(result)["error"] == "temporarily_unavailable"
        assert headers(result)["retry-after"] == ["5"]
    # A store answering anything but True has not vouched for a fresh proof.
    maybe = TokenEndpointVerifier(ENDPOINT, clock=TestClock(TOKEN["iat"]), replay_store=FakeReplayStore("odd"))
    assert maybe.authenticate(request).rejection is not None
    store = FakeReplayStore(asynchronous=True)
    async_verifier = TokenEndpointVerifier(ENDPOINT, clock=TestClock(TOKEN["iat"]), replay_store=store)
    assert (await async_verifier.aauthenticate(request)).jkt == RFC_JKT
    replayed = await async_verifier.aauthenticate(request)
    assert replayed.rejection is not None and replayed.rejection.error.reason == "replayed"


def test_config_errors() -> None:
    from dpop_middleware import VerifierConfig

    with pytest.raises(TypeError):
        TokenEndpointVerifier(config=VerifierConfig(), max_age=5)
    with pytest.raises(ValueError, match="algorithms"):
        TokenEndpointVerifier(algorithms=("HS256",))


# -- dpop_jkt at the authorization endpoint (§10) ---------------------------------------------


def test_validate_dpop_jkt() -> None:
    assert validate_dpop_jkt(RFC_JKT) == RFC_JKT
    for bad in (None, "", RFC_JKT + "A", RFC_JKT[:-1], RFC_JKT[:-1] + "=", 42, RFC_JKT[:-1] + "+"):
        with pytest.raises(InvalidRequestError):
            validate_dpop_jkt(bad)


def test_check_dpop_jkt() -> None:
    check_dpop_jkt(None, RFC_JKT)
    check_dpop_jkt(RFC_JKT, RFC_JKT)
    with pytest.raises(InvalidGrantError):
        check_dpop_jkt(RFC_JKT, DPoPKey.generate().jkt)
    with pytest.raises(InvalidGrantError):
        check_dpop_jkt("é" * 43, RFC_JKT)
