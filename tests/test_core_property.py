"""Property-based tests: hostile input never raises anything but our errors, and never verifies."""

from __future__ import annotations

import json
from typing import Any

from core_support import URL, b64, make_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpop_middleware import DPoPError, RequestInfo

ENV = make_env()
TOKEN = ENV.token(lifetime=10**9)
VERIFIER = ENV.verifier()
GOOD = ENV.proof(TOKEN)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def assert_rejected(request: RequestInfo) -> None:
    try:
        VERIFIER.verify(request)
    except DPoPError:
        return
    raise AssertionError("hostile request verified")


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes_as_proof(data: bytes) -> None:
    proof = data.decode("latin-1")
    assert_rejected(RequestInfo("GET", URL, [("Authorization", f"DPoP {TOKEN}"), ("DPoP", proof)]))


@SETTINGS
@given(st.text(max_size=300), st.text(max_size=300))
def test_arbitrary_header_values(authorization: str, proof: str) -> None:
    assert_rejected(RequestInfo("GET", URL, [("Authorization", authorization), ("DPoP", proof)]))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["typ", "alg", "jwk", "crit", "kid", "b64"]) | st.text(max_size=8), json_values, max_size=6),
       st.dictionaries(st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]) | st.text(max_size=8), json_values, max_size=7))
def test_arbitrary_json_header_and_claims(header: dict[str, Any], claims: dict[str, Any]) -> None:
    # Signed with the real key: only the content is hostile.
    proof = ENV.key.sign(header, claims)
    assert_rejected(RequestInfo("GET", URL, [("Authorization", f"DPoP {TOKEN}"), ("DPoP", proof)]))


@SETTINGS
@given(st.data())
def test_mutated_valid_proof(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(GOOD) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    if GOOD[position] == replacement:
        return
    mutated = GOOD[:position] + replacement + GOOD[position + 1 :]
    try:
        VERIFIER.verify(RequestInfo("GET", URL, [("Authorization", f"DPoP {TOKEN}"), ("DPoP", mutated)]))
    except DPoPError:
        return
    # Not even a change in the unused low bits of a segment's last character (canonical base64url only).
    raise AssertionError(f"mutated proof verified (position {position})")


@SETTINGS
@given(json_values)
def test_arbitrary_jwk(jwk: Any) -> None:
    proof = ENV.key.sign({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}, ENV.claims(TOKEN))
    assert_rejected(RequestInfo("GET", URL, [("Authorization", f"DPoP {TOKEN}"), ("DPoP", proof)]))


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_segments(text: str) -> None:
    proof = f"{b64(text)}.{b64(json.dumps(text))}.{b64(text[:64])}"
    assert_rejected(RequestInfo("GET", URL, [("Authorization", f"DPoP {TOKEN}"), ("DPoP", proof)]))
