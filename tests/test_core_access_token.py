"""JWT access tokens (RFC 9068) against a JWKS given as data."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import TestClock

from dpop_middleware import InvalidTokenError, JWTAccessTokenValidator
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer(clock=TestClock())


def reason(validator: JWTAccessTokenValidator, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    return caught.value.reason


def test_valid_token(issuer: TestIssuer) -> None:
    claims = issuer.validator().validate(issuer.token("jkt-value", scope="a b"))
    assert claims["cnf"] == {"jkt": "jkt-value"}
    assert claims["scope"] == "a b"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"iss": "https://evil.test"}, "token_wrong_issuer"),
        ({"aud": "https://other.test"}, "token_wrong_audience"),
        ({"aud": ["https://other.test", 5]}, "token_wrong_audience"),
        ({"exp": None}, "token_exp_invalid"),
        ({"exp": "soon"}, "token_exp_invalid"),
        ({"exp": 1_800_000_000 - 31}, "token_expired"),
        ({"nbf": 1_800_000_000 + 31}, "token_not_yet_valid"),
        ({"iat": 1_800_000_000 + 31}, "token_iat_in_future"),
        ({"cnf": "jkt"}, "cnf_malformed"),
        ({"scp": 5}, "token_scope_invalid"),
        ({"scp": [1, 2]}, "token_scope_invalid"),
    ],
)
def test_claim_checks(issuer: TestIssuer, claims: dict[str, Any], expected: str) -> None:
    token = issuer.token("j", **claims)
    assert reason(issuer.validator(), token) == expected


def test_audience_list_and_leeway(issuer: TestIssuer) -> None:
    issuer.validator().validate(issuer.token("j", aud=["x", "https://api.test"]))
    issuer.validator().validate(issuer.token("j", exp=1_800_000_000 - 29))  # inside 30 s leeway


def test_typ_enforcement(issuer: TestIssuer) -> None:
    token = issuer.token("j", typ="JWT")
    assert reason(issuer.validator(), token) == "token_wrong_typ"
    issuer.validator(require_typ=False).validate(token)


def test_signature_and_key_choice(issuer: TestIssuer) -> None:
    other = TestIssuer(clock=issuer.clock)
    assert reason(issuer.validator(), other.token("j")) == "token_unknown_key"
    forged = other.signing_key.sign({"alg": "ES256", "typ": "at+jwt", "kid": issuer.kid}, {"iss": issuer.issuer})
    assert reason(issuer.validator(), forged) == "token_bad_signature"


def test_alg_none_and_hs256_refused(issuer: TestIssuer) -> None:
    from core_support import raw_jws

    assert reason(issuer.validator(), raw_jws({"alg": "none", "typ": "at+jwt"}, {}, b"")) == "token_alg_not_allowed"
    assert reason(issuer.validator(), raw_jws({"alg": "HS256", "typ": "at+jwt"}, {})) == "token_alg_not_allowed"


def test_malformed(issuer: TestIssuer) -> None:
    assert reason(issuer.validator(), "abc") == "token_malformed"


def test_jwks_without_usable_keys() -> None:
    with pytest.raises(ValueError):
        JWTAccessTokenValidator(issuer="i", audience="a", jwks={"keys": [{"kty": "oct", "k": "AAAA"}]})
    with pytest.raises(ValueError):
        JWTAccessTokenValidator(issuer="i", audience="a", jwks={"nokeys": []})


def test_rsa_issuer_key() -> None:
    issuer = TestIssuer(alg="PS256", clock=TestClock())
    key = DPoPKey.generate()
    assert issuer.validator().validate(issuer.token(key.jkt))["cnf"]["jkt"] == key.jkt
