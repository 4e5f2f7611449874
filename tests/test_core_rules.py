"""One test (at least) per rule of docs/design.md §2; each fails if its rule is removed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from core_support import DROP, URL, Env, b64, make_env, raw_jws
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes import FakeReplayStore

from dpop_middleware import (
    AuthenticationRequired,
    DPoPError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    MemoryReplayStore,
    ReplayStoreUnavailable,
    RequestInfo,
)
from dpop_middleware.client import DPoPKey, public_jwk_of


@pytest.fixture
def env() -> Env:
    return make_env()


def rejects(env: Env, request: RequestInfo, error: type[DPoPError], reason: str, **options: Any) -> DPoPError:
    with pytest.raises(error) as caught:
        env.verifier(**options).verify(request)
    assert caught.value.reason == reason, (caught.value.reason, caught.value.description)
    return caught.value


def test_good_request_is_accepted(env: Env) -> None:
    token = env.token()
    principal = env.verifier().verify(env.request(token, env.proof(token)))
    assert principal.jkt == env.key.jkt
    assert principal.scheme == "DPoP"
    assert principal.subject == "alice"
    assert principal.client_id == "test-client"
    assert principal.scopes == {"read"}
    assert principal.htm == "GET" and principal.htu == URL
    assert dict(principal.jwk or {}) == env.key.public_jwk


# --- header (typ, alg, jwk, crit) -------------------------------------------------------------

@pytest.mark.parametrize("typ", [DROP, "jwt", "JWT", "at+jwt", 7])
def test_wrong_or_missing_typ(env: Env, typ: Any) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(token, header=env.header(typ=typ))), InvalidDPoPProofError, "wrong_typ")


def test_typ_is_a_case_insensitive_media_type(env: Env) -> None:
    token = env.token()
    env.verifier().verify(env.request(token, env.proof(token, header=env.header(typ="application/DPoP+JWT"))))


def test_alg_none_rejected(env: Env) -> None:
    token = env.token()
    proof = raw_jws(env.header(alg="none"), env.claims(token), b"")
    rejects(env, env.request(token, proof), InvalidDPoPProofError, "alg_not_allowed")


def test_hs256_with_oct_key_rejected(env: Env) -> None:
    import hashlib
    import hmac

    token = env.token()
    secret = b"shared-secret-shared-secret-1234"
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64(secret)}}
    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(env.claims(token)))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    rejects(env, env.request(token, f"{signing_input}.{b64(mac)}"), InvalidDPoPProofError, "alg_not_allowed")
    # Even if an operator lists HS256, the oct key is refused by the key import.
    with pytest.raises(ValueError):
        env.verifier(algorithms=("HS256",))


def test_oct_key_with_allowed_alg_rejected(env: Env) -> None:
    token = env.token()
    proof = raw_jws(env.header(jwk={"kty": "oct", "k": b64(b"k" * 32)}), env.claims(token))
    rejects(env, env.request(token, proof), InvalidDPoPProofError, "jwk_private_or_symmetric")


def test_asymmetric_alg_outside_allowlist(env: Env) -> None:
    key = DPoPKey.generate("ES384")
    token = env.token(key.jkt)
    rejects(env, env.request(token, env.proof(token, key=key)), InvalidDPoPProofError, "alg_not_allowed", algorithms=("ES256",))


@pytest.mark.parametrize("alg", ["ES384", "RS256", "EdDSA"])
def test_alg_key_mismatch(env: Env, alg: str) -> None:
    token = env.token()
    # An ES256 key announced under another alg: never verified with the wrong algorithm.
    proof = raw_jws(env.header(alg=alg), env.claims(token))
    rejects(env, env.request(token, proof), InvalidDPoPProofError, "alg_key_mismatch")


def test_jwk_alg_member_must_match(env: Env) -> None:
    token = env.token()
    header = env.header(jwk=dict(env.key.public_jwk, alg="ES384"))
    rejects(env, env.request(token, env.proof(token, header=header)), InvalidDPoPProofError, "alg_key_mismatch")


def test_private_jwk_rejected(env: Env) -> None:
    token = env.token()
    jwk = dict(env.key.public_jwk, d=b64(b"\x01" * 32))
    rejects(env, env.request(token, env.proof(token, header=env.header(jwk=jwk))), InvalidDPoPProofError, "jwk_private_or_symmetric")


def test_jwk_with_generate_member_rejected(env: Env) -> None:
    token = env.token()
    for jwk in ({"generate": "EC", "crv": "P-256", "kty": "EC"}, dict(env.key.public_jwk, generate="EC")):
        proof = env.proof(token, header=env.header(jwk=jwk))
        rejects(env, env.request(token, proof), InvalidDPoPProofError, "jwk_private_or_symmetric")


def test_small_rsa_key_rejected(env: Env) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    key = DPoPKey.__new__(DPoPKey)
    object.__setattr__(key, "_key", small)
    object.__setattr__(key, "alg", "RS256")
    object.__setattr__(key, "public_jwk", public_jwk_of(small))
    object.__setattr__(key, "jkt", "x")
    token = env.token()
    rejects(env, env.request(token, env.proof(token, key=key)), InvalidDPoPProofError, "jwk_rsa_too_small")


def test_missing_or_non_object_jwk(env: Env) -> None:
    token = env.token()
    for jwk in (DROP, "a-string", ["list"]):
        rejects(env, env.request(token, env.proof(token, header=env.header(jwk=jwk))), InvalidDPoPProofError, "jwk_not_object")


def test_ec_point_not_on_curve(env: Env) -> None:
    token = env.token()
    jwk = dict(env.key.public_jwk, y=b64(b"\x01" * 32))
    rejects(env, env.request(token, env.proof(token, header=env.header(jwk=jwk))), InvalidDPoPProofError, "jwk_invalid_key")


def test_crit_rejected(env: Env) -> None:
    token = env.token()
    header = env.header(crit=["exp"], exp=1)
    rejects(env, env.request(token, env.proof(token, header=header)), InvalidDPoPProofError, "crit_not_supported")


def test_json_serialization_rejected(env: Env) -> None:
    token = env.token()
    compact = env.proof(token, header={"alg": "ES256", "typ": "dpop+jwt"})
    head, payload, sig = compact.split(".")
    general = json.dumps({"payload": payload, "protected": head, "header": {"jwk": env.key.public_jwk}, "signature": sig})
    # Through the verifier the commas already make it "several proofs"; the proof parser refuses it too.
    rejects(env, env.request(token, general), InvalidRequestError, "multiple_dpop_headers")
    from dpop_middleware.core.proof import access_token_hash, verify_proof

    with pytest.raises(InvalidDPoPProofError) as caught:
        verify_proof(general, method="GET", url=URL, token_hash=access_token_hash(token), now=env.clock.now,
                     config=env.verifier().config)
    assert caught.value.reason == "not_compact_jws"
    flattened = b64(general)  # not three segments either
    rejects(env, env.request(token, flattened), InvalidDPoPProofError, "not_compact_jws")


def test_duplicate_json_members_in_header(env: Env) -> None:
    token = env.token()
    jwk = json.dumps(env.key.public_jwk)
    header_text = f'{{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":{jwk}}}'
    claims = json.dumps(env.claims(token))
    signing_input = f"{b64(header_text)}.{b64(claims)}"
    proof = env.key.sign({"alg": "ES256"}, {}).split(".")[2]
    rejects(env, env.request(token, f"{signing_input}.{proof}"), InvalidDPoPProofError, "duplicate_json_member")


@pytest.mark.parametrize("mangle", ["padding", "alphabet", "four_parts", "empty"])
def test_malformed_encodings(env: Env, mangle: str) -> None:
    token = env.token()
    proof = env.proof(token)
    bad = {"padding": proof + "==", "alphabet": proof.replace("-", "+", 1) if "-" in proof else "+" + proof,
           "four_parts": proof + ".x", "empty": ".."}[mangle]
    with pytest.raises(InvalidDPoPProofError):
        env.verifier().verify(env.request(token, bad))


def test_tampered_signature(env: Env) -> None:
    token = env.token()
    head, body, sig = env.proof(token).split(".")
    tampered_sig = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    rejects(env, env.request(token, f"{head}.{body}.{tampered_sig}"), InvalidDPoPProofError, "bad_signature")
    other_body = b64(json.dumps(env.claims(token, htm="GET", jti="tampered")))
    rejects(env, env.request(token, f"{head}.{other_body}.{sig}"), InvalidDPoPProofError, "bad_signature")


def test_signed_by_another_key(env: Env) -> None:
    token = env.token()
    other = DPoPKey.generate("ES256")
    proof = other.sign(env.header(), env.claims(token))  # header names env.key's jwk
    rejects(env, env.request(token, proof), InvalidDPoPProofError, "bad_signature")


# --- claims -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        ("jti", DROP, "jti_missing"),
        ("jti", 12, "jti_missing"),
        ("jti", "", "jti_missing"),
        ("htm", DROP, "htm_missing"),
        ("htm", ["GET"], "htm_missing"),
        ("htu", DROP, "htu_missing"),
        ("htu", 5, "htu_missing"),
        ("iat", DROP, "iat_missing"),
        ("iat", "1800000000", "iat_missing"),
        ("iat", True, "iat_missing"),
        ("iat", 10**400, "iat_missing"),
        ("ath", DROP, "ath_missing"),
        ("ath", 1, "ath_missing"),
    ],
)
def test_missing_or_wrongly_typed_claims(env: Env, claim: str, value: Any, reason: str) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(token, **{claim: value})), InvalidDPoPProofError, reason)


def test_oversized_jti(env: Env) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(token, jti="j" * 257)), InvalidDPoPProofError, "jti_too_long")


def test_oversized_proof(env: Env) -> None:
    token = env.token()
    proof = env.proof(token, padding="x" * 9000)
    rejects(env, env.request(token, proof), InvalidDPoPProofError, "proof_too_large")


def test_oversized_token(env: Env) -> None:
    token = env.token(padding="x" * 17000)
    rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "token_too_large")


def test_htm_is_case_sensitive(env: Env) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(token, htm="get")), InvalidDPoPProofError, "htm_mismatch")
    rejects(env, env.request(token, env.proof(token, htm="POST")), InvalidDPoPProofError, "htm_mismatch")


@pytest.mark.parametrize(
    ("htu", "ok"),
    [
        ("https://API.Example.COM/v1/items", True),  # host case
        ("HTTPS://api.example.com/v1/items", True),  # scheme case
        ("https://api.example.com:443/v1/items", True),  # default port
        ("https://api.example.com/v1/items?x=1#frag", True),  # query and fragment ignored
        ("https://api.example.com/v1/%69tems", True),  # unreserved escape decoded
        ("https://api.example.com/v1/./x/../items", True),  # dot segments
        ("https://other.example.com/v1/items", False),  # host
        ("https://api.example.com/v1/Items", False),  # path case
        ("https://api.example.com/v1/items/", False),  # trailing slash is another resource
        ("https://api.example.com/v1", False),  # prefix only (no endswith/startswith)
        ("https://evil.example/https://api.example.com/v1/items", False),
        ("http://api.example.com/v1/items", False),  # scheme
        ("https://api.example.com:8443/v1/items", False),  # port
        ("https://user@api.example.com/v1/items", False),  # userinfo
        ("/v1/items", False),  # relative
        ("https://api.example.com/v1/it%zzems", False),  # broken escape
    ],
)
def test_htu_comparison(env: Env, htu: str, ok: bool) -> None:
    token = env.token()
    request = env.request(token, env.proof(token, htu=htu))
    if ok:
        env.verifier().verify(request)
    else:
        error = rejects(env, request, InvalidDPoPProofError, "htu_mismatch")
        assert error.diagnostics["expected"] == URL


def test_percent_escape_case_is_normalized(env: Env) -> None:
    token = env.token()
    url = "https://api.example.com/a%2fb"
    request = env.request(token, env.proof(token, htu="https://api.example.com/a%2Fb"), url=url)
    env.verifier().verify(request)


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-60 - 10 - 1, "iat_too_old"), (-60 - 10, None), (10, None), (11, "iat_in_future"), (-3600, "iat_too_old")],
)
def test_iat_window_edges(env: Env, offset: float, reason: str | None) -> None:
    token = env.token()
    request = env.request(token, env.proof(token, iat=env.clock.now + offset))
    if reason is None:
        env.verifier().verify(request)
    else:
        error = rejects(env, request, InvalidDPoPProofError, reason)
        assert error.diagnostics["iat_offset"] == offset


# --- replay ---------------------------------------------------------------------------------------

def test_replay_of_the_same_proof(env: Env) -> None:
    token = env.token()
    request = env.request(token, env.proof(token))
    verifier = env.verifier()
    verifier.verify(request)
    rejects(env, request, InvalidDPoPProofError, "replayed")


def test_new_proof_with_used_jti(env: Env) -> None:
    token = env.token()
    verifier = env.verifier()
    verifier.verify(env.request(token, env.proof(token, jti="same")))
    env.clock.now += 1
    rejects(env, env.request(token, env.proof(token, jti="same")), InvalidDPoPProofError, "replayed")


def test_replay_entry_outlives_the_acceptance_window(env: Env) -> None:
    token = env.token()
    request = env.request(token, env.proof(token))
    env.verifier().verify(request)
    env.clock.now += 60 + 2 * 10 - 0.5  # proof still acceptable (iat window + skew): must still be remembered
    env.clock.now -= 20  # keep iat inside the window for the retry
    rejects(env, request, InvalidDPoPProofError, "replayed")


def test_failed_request_does_not_burn_the_proof(env: Env) -> None:
    token = env.token()
    proof = env.proof(token)
    rejects(env, env.request(env.token(None), proof), InvalidDPoPProofError, "ath_mismatch")
    env.verifier().verify(env.request(token, proof))
    assert len(env.store) == 1


def test_replay_store_written_last(env: Env) -> None:
    """A proof for a token bound to another key must not reach the store."""
    token = env.token("someone-elses-jkt")
    rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "key_binding_mismatch")
    assert len(env.store) == 0


def test_store_full_refuses_with_503(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryReplayStore(max_entries=2, clock=env.clock)
    verifier = env.verifier(replay_store=store)
    for _ in range(2):
        token = env.token()
        verifier.verify(env.request(token, env.proof(token)))
    token = env.token()
    with caplog.at_level(logging.WARNING, "dpop_middleware"), pytest.raises(ReplayStoreUnavailable) as caught:
        verifier.verify(env.request(token, env.proof(token)))
    assert caught.value.reason == "replay_store_full"
    assert caught.value.status == 503
    assert "peak proofs per second x replay window" in caplog.text
    # Once the earlier entries have expired, the store accepts again (it never evicted them early).
    env.clock.now += 81
    token = env.token()
    verifier.verify(env.request(token, env.proof(token)))


def test_store_exception_fails_closed(env: Env) -> None:
    token = env.token()
    with pytest.raises(ReplayStoreUnavailable):
        env.verifier(replay_store=FakeReplayStore("error")).verify(env.request(token, env.proof(token)))


def test_store_answer_must_be_true(env: Env) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(token)), InvalidDPoPProofError, "replayed", replay_store=FakeReplayStore("odd"))


# --- token binding and schemes -------------------------------------------------------------------

def test_missing_ath_binding_mismatch(env: Env) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(env.token())), InvalidDPoPProofError, "ath_mismatch")


def test_cnf_jkt_mismatch(env: Env) -> None:
    token = env.token(DPoPKey.generate().jkt)
    error = rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "key_binding_mismatch")
    assert error.description == "Invalid DPoP key binding"


def test_unbound_token_with_dpop_scheme(env: Env) -> None:
    token = env.token(None)
    rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "token_not_bound")


def test_bound_token_with_bearer_scheme(env: Env) -> None:
    token = env.token()
    error = rejects(env, env.request(token, None, scheme="Bearer"), InvalidTokenError, "bound_token_as_bearer", mode="allow_bearer")
    assert error.scheme == "Bearer"
    # In required mode, Bearer is not accepted at all.
    rejects(env, env.request(token, None, scheme="Bearer"), AuthenticationRequired, "bearer_not_accepted")


def test_unbound_bearer_in_allow_bearer_mode(env: Env) -> None:
    token = env.token(None)
    principal = env.verifier(mode="allow_bearer").verify(env.request(token, None, scheme="Bearer"))
    assert principal.scheme == "Bearer" and principal.jkt is None and not principal.is_dpop_bound


def test_both_schemes(env: Env) -> None:
    token = env.token()
    rejects(env, env.request(token, env.proof(token), scheme="Bearer"), InvalidRequestError, "bearer_with_dpop_proof", mode="allow_bearer")


def test_two_dpop_headers(env: Env) -> None:
    token = env.token()
    request = RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", env.proof(token)), ("dpop", env.proof(token))])
    rejects(env, request, InvalidRequestError, "multiple_dpop_headers")


def test_comma_joined_dpop_header(env: Env) -> None:
    token = env.token()
    request = RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", f"{env.proof(token)}, {env.proof(token)}")])
    rejects(env, request, InvalidRequestError, "multiple_dpop_headers")


def test_two_authorization_headers(env: Env) -> None:
    token = env.token()
    request = RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("Authorization", f"DPoP {token}"), ("DPoP", env.proof(token))])
    rejects(env, request, InvalidRequestError, "multiple_authorization_headers")


def test_token_in_query_and_header(env: Env) -> None:
    token = env.token()
    request = env.request(token, env.proof(token), url=URL + "?access_token=abc")
    rejects(env, request, InvalidRequestError, "multiple_token_locations")


def test_dpop_scheme_without_proof(env: Env) -> None:
    rejects(env, env.request(env.token(), None), InvalidDPoPProofError, "proof_missing")


def test_no_credentials_and_other_schemes(env: Env) -> None:
    rejects(env, env.request(None, None), AuthenticationRequired, "missing_credentials")
    rejects(env, RequestInfo("GET", URL, [("Authorization", "Basic dXNlcjpwYXNz")]), AuthenticationRequired, "unsupported_scheme")


def test_malformed_token(env: Env) -> None:
    rejects(env, env.request("not a token!", env.proof("x")), InvalidTokenError, "token_malformed")


def test_token_validator_errors(env: Env) -> None:
    token = env.token()

    def raises_value_error(_: str) -> dict[str, Any]:
        raise ValueError("boom")

    from dpop_middleware import TokenValidationUnavailable

    with pytest.raises(TokenValidationUnavailable):
        env.verifier(token_validator=raises_value_error).verify(env.request(token, env.proof(token)))
    rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "token_invalid", token_validator=lambda _t: None)
    rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "cnf_malformed",
            token_validator=lambda _t: {"cnf": "x"})


def test_expired_token(env: Env) -> None:
    token = env.token(lifetime=10)
    env.clock.now += 100
    rejects(env, env.request(token, env.proof(token)), InvalidTokenError, "token_expired")


def test_bad_host_is_a_client_error(env: Env) -> None:
    token = env.token()
    request = env.request(token, env.proof(token), url="https://bad host/v1/items")
    rejects(env, request, InvalidRequestError, "bad_request_url")


def test_rejections_are_logged_without_secrets(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token()
    proof = env.proof(token, htu="https://api.example.com/other")
    with caplog.at_level(logging.INFO, "dpop_middleware"):
        result = env.verifier().authenticate(env.request(token, proof))
    assert result.rejection is not None and result.rejection.status == 401
    records = [r for r in caplog.records if getattr(r, "dpop_reason", None) == "htu_mismatch"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.dpop_expected == URL  # type: ignore[attr-defined]
    assert record.dpop_received == "https://api.example.com/other"  # type: ignore[attr-defined]
    text = caplog.text
    assert token not in text and proof not in text and env.key.public_jwk["x"] not in text


def test_iat_rejection_logs_clock_offset(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token()
    with caplog.at_level(logging.INFO, "dpop_middleware"):
        env.verifier().authenticate(env.request(token, env.proof(token, iat=env.clock.now - 500)))
    assert [r.dpop_iat_offset for r in caplog.records if getattr(r, "dpop_reason", "") == "iat_too_old"] == [-500]  # type: ignore[attr-defined]


def test_token_claims_are_cached_until_exp(env: Env) -> None:
    calls: list[str] = []
    validator = env.issuer.validator()

    def counting(token: str) -> Any:
        calls.append(token)
        return validator.validate(token)

    verifier = env.verifier(token_validator=counting)
    token = env.token(lifetime=30)
    for _ in range(3):
        verifier.verify(env.request(token, env.proof(token)))
    assert len(calls) == 1
    env.clock.now += 61  # past exp and the validator's leeway: the cache must not vouch for it
    with pytest.raises(InvalidTokenError):
        verifier.verify(env.request(token, env.proof(token)))
    assert len(calls) == 2


def test_duplicate_claim_names_keep_the_last_as_rfc7519_allows(env: Env) -> None:
    import hashlib as _hashlib

    token = env.token()
    claims_text = (
        f'{{"jti":"dup","htm":"POST","htm":"GET","htu":"{URL}","iat":{int(env.clock.now)},'
        f'"ath":"{b64(_hashlib.sha256(token.encode()).digest())}"}}'
    )
    head = b64(json.dumps(env.header()))
    body = b64(claims_text)
    # Sign the exact text, duplicate included (a JSON serializer would drop it).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(env.key._key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    proof = f"{head}.{body}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    assert env.verifier().verify(env.request(token, proof)).htm == "GET"
