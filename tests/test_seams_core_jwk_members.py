"""Issue 19 §1.3 and §1.6: JWK members of any JSON type, odd JWKS entries, non-minimal RSA integers.

§1.3: a ``crv`` (or any member) that is a list or an object crashed the import with ``TypeError``
(a 500 for a proof, a 503 for every request when it sat in the authorization server's JWKS).
Every member of every key type, with every JSON type, must end in a ``JWKError``; an unusable JWKS
entry is skipped (logged once, with its kid and reason) and the good keys beside it keep working.

§1.6: RFC 7518 §6.3.1.1 wants ``n`` and ``e`` as minimal big-endian octets; a leading zero byte
gave one RSA key several spellings, hence several thumbprints.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from typing import Any

import httpx
import pytest
from core_support import make_env

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.access_token import KeySet
from dpop_middleware.core.keys import JWKError, import_public_jwk, jwk_thumbprint
from dpop_middleware.core.token_endpoint import check_token_request
from dpop_middleware.testing import TestIssuer
from dpop_middleware.tokens import JWTAccessTokenValidator, RemoteJWKSValidator

ODD: dict[str, Any] = {
    "list": ["P-256"],
    "empty_list": [],
    "object": {"crv": "P-256"},
    "empty_object": {},
    "int": 7,
    "float": 1.5,
    "true": True,
    "null": None,
    "empty_string": "",
    "big_int": 10**39,
    "lone_surrogate": "\ud800",
}
KEYS = {"EC": DPoPKey.generate("ES256"), "OKP": DPoPKey.generate("EdDSA"), "RSA": DPoPKey.generate("PS256")}
MEMBERS = {
    "EC": ("kty", "crv", "x", "y", "use", "alg", "key_ops"),
    "OKP": ("kty", "crv", "x", "use", "alg", "key_ops"),
    "RSA": ("kty", "n", "e", "use", "alg", "key_ops"),
}
CASES = [(kty, member, kind) for kty, members in MEMBERS.items() for member in members for kind in ODD]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(("kty", "member", "kind"), CASES, ids=[f"{k}.{m}={v}" for k, m, v in CASES])
def test_jwk_member_of_any_json_type_is_a_jwk_error(kty: str, member: str, kind: str) -> None:
    jwk = dict(KEYS[kty].public_jwk, **{member: ODD[kind]})
    if member in ("use", "alg", "key_ops"):
        with contextlib.suppress(JWKError):  # optional members: refused, or ignored where they restrict nothing
            import_public_jwk(jwk)
        return
    with pytest.raises(JWKError):
        import_public_jwk(jwk)
    with pytest.raises(JWKError):
        jwk_thumbprint(jwk)


@pytest.mark.parametrize("crv", [["P-256"], {"a": 1}, []], ids=["list", "object", "empty_list"])
def test_proof_jwk_crv_not_a_string_is_an_invalid_proof_not_a_500(crv: Any) -> None:
    env = make_env()
    token = env.token()
    header = env.header(jwk=dict(env.key.public_jwk, crv=crv))
    result = env.verifier().authenticate(env.request(token, env.proof(token, header=header)))
    assert result.rejection is not None and result.rejection.status == 401
    assert result.rejection.error.reason == "jwk_unsupported_curve"
    with pytest.raises(Exception) as info:  # the token endpoint: the same rule, as a 400
        request = env.request(None, env.proof(None, header=header, htm="POST"), method="POST")
        check_token_request(request, config=env.verifier().config, now=env.clock.now)
    assert getattr(info.value, "reason", None) == "jwk_unsupported_curve"


def _jwks_with_odd_entry(issuer: TestIssuer, kid: str = "odd-key", **odd: Any) -> dict[str, Any]:
    other = DPoPKey.generate("ES256")
    entry = dict(other.public_jwk, kid=kid, use="sig", **odd)
    return {"keys": [entry, *issuer.jwks["keys"]]}


@pytest.mark.parametrize(
    "odd",
    [{"crv": ["P-256"]}, {"crv": {"a": 1}}, {"kty": ["EC"]}, {"x": {}}, {"alg": ["ES256"]}, {"key_ops": "verify"}],
    ids=["crv_list", "crv_object", "kty_list", "x_object", "alg_list", "key_ops_string"],
)
def test_static_jwks_skips_an_odd_entry_and_keeps_the_good_key(odd: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    env = make_env()
    kid = "odd-" + next(iter(odd)) + "-" + type(next(iter(odd.values()))).__name__  # logged once per process
    jwks = _jwks_with_odd_entry(env.issuer, kid=kid, **odd)
    caplog.set_level(logging.WARNING, logger="dpop_middleware")
    keys = KeySet(jwks)
    assert [kid for kid, _, _ in keys.keys] == [env.issuer.kid]
    assert [skipped for skipped, _ in keys.skipped] == [kid]
    validator = JWTAccessTokenValidator(issuer=env.issuer.issuer, audience=env.issuer.audience, jwks=jwks, clock=env.clock)
    token = env.token()
    assert DPoPVerifier(validator, clock=env.clock).verify(env.request(token, env.proof(token))).is_dpop_bound
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and kid in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, naming the kid and the reason
    assert "jwk_" in warnings[0]
    JWTAccessTokenValidator(issuer=env.issuer.issuer, audience=env.issuer.audience, jwks=jwks, clock=env.clock)
    again = [r for r in caplog.records if kid in r.getMessage()]
    assert len(again) == 1  # the same entry seen again is not logged again


def test_remote_jwks_with_an_odd_entry_serves_the_good_key_and_fetches_once() -> None:
    env = make_env()
    body = json.dumps(_jwks_with_odd_entry(env.issuer, crv=["P-256"])).encode()
    fetches: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        return httpx.Response(200, content=body, headers={"Cache-Control": "max-age=300"})

    validator = RemoteJWKSValidator(
        issuer=env.issuer.issuer, audience=env.issuer.audience, jwks_uri="https://as.test/jwks", clock=env.clock,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    )  # fmt: skip
    verifier = DPoPVerifier(validator, clock=env.clock)
    for _ in range(5):
        token = env.token()
        assert verifier.verify(env.request(token, env.proof(token))).is_dpop_bound
    assert len(fetches) == 1


def test_jwks_with_no_usable_key_is_still_an_error() -> None:
    env = make_env()
    jwks = _jwks_with_odd_entry(env.issuer, crv=["P-256"])
    jwks["keys"] = jwks["keys"][:1]
    with pytest.raises(ValueError, match="no usable signing key"):
        JWTAccessTokenValidator(issuer=env.issuer.issuer, audience=env.issuer.audience, jwks=jwks)
    body = json.dumps(jwks).encode()
    validator = RemoteJWKSValidator(
        issuer=env.issuer.issuer, audience=env.issuer.audience, jwks_uri="https://as.test/jwks", clock=env.clock,
        http_client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))),
    )  # fmt: skip
    token = env.token()
    result = DPoPVerifier(validator, clock=env.clock).authenticate(env.request(token, env.proof(token)))
    assert result.rejection is not None and result.rejection.status == 503


# -- §1.6: RSA integers in their minimal encoding only ----------------------------------------------


@pytest.mark.parametrize("member", ["n", "e"])
def test_rsa_member_with_leading_zero_byte_is_refused(member: str) -> None:
    jwk = dict(KEYS["RSA"].public_jwk)
    padded = dict(jwk, **{member: _b64(b"\x00" + _unb64(jwk[member]))})
    import_public_jwk(jwk)  # the minimal spelling imports
    with pytest.raises(JWKError) as info:
        import_public_jwk(padded)
    assert info.value.reason == "jwk_rsa_not_minimal"
    with pytest.raises(JWKError):
        jwk_thumbprint(padded)  # no second thumbprint for the same key


@pytest.mark.parametrize("value", [b"\x00", b""], ids=["zero", "empty"])
def test_rsa_exponent_zero_or_empty_is_refused(value: bytes) -> None:
    jwk = dict(KEYS["RSA"].public_jwk, e=_b64(value) or "")
    with pytest.raises(JWKError):
        import_public_jwk(jwk)


def test_proof_with_rsa_key_padded_with_a_zero_byte_is_an_invalid_proof() -> None:
    env = make_env()
    key = KEYS["RSA"]
    token = env.issuer.token(key.jkt)
    jwk = dict(key.public_jwk, n=_b64(b"\x00" + _unb64(key.public_jwk["n"])))
    proof = env.proof(token, key=key, header=env.header(key, jwk=jwk))
    result = env.verifier().authenticate(env.request(token, proof))
    assert result.rejection is not None and result.rejection.status == 401
    assert result.rejection.error.reason == "jwk_rsa_not_minimal"
