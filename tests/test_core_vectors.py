"""RFC 9449 and RFC 7638 published examples as known-answer tests (clock fixed at their iat)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import TestClock

from dpop_middleware import DPoPVerifier, InvalidDPoPProofError, RequestInfo, jwk_thumbprint
from dpop_middleware.core.challenge import render_error
from dpop_middleware.core.config import VerifierConfig
from dpop_middleware.core.errors import AuthenticationRequired, InvalidTokenError, UseDPoPNonceError
from dpop_middleware.core.proof import access_token_hash, verify_proof

VECTORS = json.loads((Path(__file__).parent / "rfc9449_vectors.json").read_text())
CONFIG = VerifierConfig()


def test_rfc7638_thumbprint_example() -> None:
    example = VECTORS["rfc7638_example"]
    assert jwk_thumbprint(example["jwk"]) == example["thumbprint"]


def test_rfc9449_proof_key_thumbprint() -> None:
    assert jwk_thumbprint(VECTORS["proof_public_jwk"]) == VECTORS["proof_jkt"]


@pytest.mark.parametrize("name", ["token_request_proof", "refresh_request_proof"])
def test_token_endpoint_proofs_verify(name: str) -> None:
    vec = VECTORS[name]
    proof = verify_proof(vec["jws"], method=vec["method"], url=vec["url"], token_hash=None, now=vec["iat"], config=CONFIG)
    assert proof.key.jkt == VECTORS["proof_jkt"]
    assert proof.htu == "https://server.example.com/token"
    assert dict(proof.key.public_jwk) == VECTORS["proof_public_jwk"]


def test_resource_request_proof_with_ath() -> None:
    vec = VECTORS["resource_request_proof"]
    token_hash = access_token_hash(vec["access_token"])
    from dpop_middleware.core.jose import b64url_encode

    assert b64url_encode(token_hash) == vec["ath"]
    proof = verify_proof(vec["jws"], method="GET", url=vec["url"], token_hash=token_hash, now=vec["iat"], config=CONFIG)
    assert proof.claims["ath"] == vec["ath"]
    # The same proof against another token fails on ath.
    with pytest.raises(InvalidDPoPProofError) as err:
        verify_proof(vec["jws"], method="GET", url=vec["url"], token_hash=access_token_hash("other"), now=vec["iat"], config=CONFIG)
    assert err.value.reason == "ath_mismatch"


def test_rfc_proof_outside_its_window_is_rejected() -> None:
    vec = VECTORS["resource_request_proof"]
    with pytest.raises(InvalidDPoPProofError) as err:
        verify_proof(vec["jws"], method="GET", url=vec["url"], token_hash=access_token_hash(vec["access_token"]), now=vec["iat"] + 3600, config=CONFIG)
    assert err.value.reason == "iat_too_old"


def test_end_to_end_with_rfc_example_token_claims() -> None:
    """The §7.1 request, with the §6.2 introspection body standing in as the token's claims."""
    vec = VECTORS["resource_request_proof"]
    claims = VECTORS["introspection_response_example"]["body"]
    verifier = DPoPVerifier(lambda token: claims if token == vec["access_token"] else None, clock=TestClock(vec["iat"]))
    request = RequestInfo("GET", vec["url"], [("Authorization", f"DPoP {vec['access_token']}"), ("DPoP", vec["jws"])])
    principal = verifier.verify(request)
    assert principal.jkt == VECTORS["proof_jkt"]
    assert principal.subject == "someone@example.com"
    assert principal.htu == vec["url"]


def test_jwt_access_token_example_claims_bind() -> None:
    """§6.1's JWT: its claims (signature uncheckable) carry cnf.jkt of the example key."""
    from dpop_middleware.core.jose import parse_compact

    claims = parse_compact(VECTORS["jwt_access_token_example"]["jwt"]).payload
    assert claims["cnf"]["jkt"] == VECTORS["proof_jkt"]


def test_challenges_match_rfc_examples() -> None:
    examples = VECTORS["challenge_examples"]
    no_auth = render_error(AuthenticationRequired(), ("ES256", "PS256"), False)
    assert dict(no_auth.headers)["WWW-Authenticate"] == examples["7.1_no_auth"]
    binding = render_error(InvalidTokenError("key_binding_mismatch", "Invalid DPoP key binding"), ("ES256",), False)
    assert dict(binding.headers)["WWW-Authenticate"] == examples["7.1_binding"]
    nonce = render_error(UseDPoPNonceError("eyJ7S_zG.eyJH0-Z.HX4w-7v"), ("ES256",), False)
    challenge = dict(nonce.headers)["WWW-Authenticate"]
    assert challenge.startswith(examples["9_use_nonce"])
    assert [v for k, v in nonce.headers if k == "DPoP-Nonce"] == ["eyJ7S_zG.eyJH0-Z.HX4w-7v"]
