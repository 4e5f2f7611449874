"""``profile="fapi2"``: one test per rule of the table in docs/fapi2.md (FAPI 2.0 Security Profile,
resource-server rules), plus the settings that turn it on and the errors that name both sides."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed448, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey, public_jwk_of, sign_compact
from dpop_middleware.core.config import FAPI2_ALGORITHMS, VerifierConfig
from dpop_middleware.core.jose import b64url_encode
from dpop_middleware.core.request import RequestInfo
from dpop_middleware.core.resource_metadata import ResourceMetadata
from dpop_middleware.settings import SettingsError, build_verifier, environ_settings, environ_spell
from dpop_middleware.testing import TestIssuer

ISSUER = TestIssuer(audience="https://api.test")
URL = "https://api.test/accounts"


def fapi2(**options: Any) -> DPoPVerifier:
    return DPoPVerifier(ISSUER.validator(), profile="fapi2", **options)


def request(key: DPoPKey | None, *, proof: str | None = None, url: str = URL, scheme: str = "DPoP",
            token: str | None = None, **proof_options: Any) -> RequestInfo:  # fmt: skip
    jkt = key.jkt if key is not None and scheme == "DPoP" else None
    token = token or ISSUER.token(jkt, scope="accounts")
    headers = [("Authorization", f"{scheme} {token}")]
    if proof is None and key is not None and scheme == "DPoP":
        proof = key.proof("GET", URL, access_token=token, **proof_options)
    if proof is not None:
        headers.append(("DPoP", proof))
    return RequestInfo("GET", url, headers)


def outcome(verifier: DPoPVerifier, info: RequestInfo) -> tuple[int, str]:
    result = verifier.authenticate(info)
    if result.rejection is None:
        return 200, "ok"
    return result.rejection.status, result.rejection.error.reason


def foreign_proof(private_key: Any, alg: str, token: str) -> str:
    """A proof signed with a key DPoPKey would not make (Ed448, small RSA): the header carries its JWK."""
    claims = {"jti": "j-" + alg + str(time.time()), "htm": "GET", "htu": URL, "iat": int(time.time())}
    import hashlib

    claims["ath"] = b64url_encode(hashlib.sha256(token.encode()).digest())
    if isinstance(private_key, ed448.Ed448PrivateKey):
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        header = {"typ": "dpop+jwt", "alg": alg, "jwk": {"kty": "OKP", "crv": "Ed448", "x": b64url_encode(raw)}}
        segments = ".".join(b64url_encode(json.dumps(part).encode()) for part in (header, claims))
        return f"{segments}.{b64url_encode(private_key.sign(segments.encode()))}"
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk_of(private_key)}
    return sign_compact(private_key, alg, header, claims)


# -- §5.4.1 item 1.2: PS256, ES256, EdDSA ------------------------------------------------------------


def test_algorithms_default_to_ps256_es256_eddsa_and_others_are_refused() -> None:
    verifier = fapi2()
    assert verifier.config.algorithms == FAPI2_ALGORITHMS == ("PS256", "ES256", "EdDSA")
    for alg in ("PS256", "ES256", "EdDSA"):
        assert outcome(verifier, request(DPoPKey.generate(alg))) == (200, "ok"), alg
    for alg in ("RS256", "ES384", "PS512"):
        assert outcome(verifier, request(DPoPKey.generate(alg))) == (401, "alg_not_allowed"), alg
    assert outcome(DPoPVerifier(ISSUER.validator()), request(DPoPKey.generate("RS256")))[0] == 200  # without it


def test_an_algorithm_outside_the_profile_is_a_configuration_error_naming_both() -> None:
    with pytest.raises(ValueError, match=r"algorithms \['RS256'\] contradict profile='fapi2'.*§5.4.1"):
        fapi2(algorithms=("ES256", "RS256"))
    assert fapi2(algorithms=("ES256",)).config.algorithms == ("ES256",)  # a subset narrows further


def test_eddsa_means_ed25519_only() -> None:
    private = ed448.Ed448PrivateKey.generate()
    token = ISSUER.token(None, scope="accounts")  # unbound here: the proof is refused before the token counts
    info = RequestInfo(
        "GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", foreign_proof(private, "EdDSA", token))]
    )
    assert outcome(fapi2(), info) == (401, "curve_not_allowed")
    # Without the profile, an Ed448 key passes the proof checks (then fails only on the unbound token).
    assert outcome(DPoPVerifier(ISSUER.validator()), info)[1] != "curve_not_allowed"


# -- §5.4.1 item 1.3: never "none" --------------------------------------------------------------------


def test_the_none_algorithm_is_refused() -> None:
    key = DPoPKey.generate("ES256")
    header = b64url_encode(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk}).encode())
    payload = b64url_encode(json.dumps({"jti": "x", "htm": "GET", "htu": URL, "iat": int(time.time())}).encode())
    status, reason = outcome(fapi2(), request(key, proof=f"{header}.{payload}."))
    assert (status, reason) == (401, "alg_not_allowed")


# -- §5.4.1 item 2: RSA keys of 2048 bits or more ------------------------------------------------------


def test_rsa_keys_below_2048_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="2048"):
        VerifierConfig(profile="fapi2", min_rsa_bits=1024)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    token = ISSUER.token(None, scope="accounts")
    info = RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", foreign_proof(small, "PS256", token))])
    assert outcome(fapi2(), info) == (401, "jwk_rsa_too_small")
    assert outcome(fapi2(), request(DPoPKey.generate("PS256", rsa_bits=2048))) == (200, "ok")


# -- §5.3.4 item 5: sender-constrained tokens only -------------------------------------------------


@pytest.mark.parametrize("mode", ["allow_bearer", "report_only"])
def test_modes_that_take_unbound_or_unchecked_tokens_contradict_the_profile(mode: str) -> None:
    with pytest.raises(ValueError, match=f"mode='{mode}' contradicts profile='fapi2'.*§5.3.4"):
        fapi2(mode=mode)


def test_bearer_tokens_are_refused() -> None:
    status, reason = outcome(fapi2(), request(None, scheme="Bearer"))
    assert status == 401 and reason == "bearer_not_accepted"


# -- §5.3.4 items 1 and 2: the header, never the query -----------------------------------------------


def test_a_token_in_the_query_is_never_read() -> None:
    token = ISSUER.token(None, scope="accounts")
    alone = RequestInfo("GET", f"{URL}?access_token={token}", [])
    assert outcome(fapi2(), alone) == (401, "token_in_query")
    key = DPoPKey.generate("ES256")
    both = request(key, url=f"{URL}?access_token={token}")
    assert outcome(fapi2(), both) == (400, "multiple_token_locations")


# -- §5.3.2.1 item 13: 10 s in the future accepted, nothing over 60 s --------------------------------


@pytest.mark.parametrize("skew", [0, 5, 61, 300])
def test_clock_skew_outside_10_to_60_seconds_contradicts_the_profile(skew: float) -> None:
    with pytest.raises(ValueError, match=f"clock_skew={skew:g} contradicts profile='fapi2'.*§5.3.2.1"):
        fapi2(clock_skew=skew)


def test_proofs_up_to_10_seconds_ahead_pass_and_far_future_ones_do_not() -> None:
    now = time.time()
    verifier = DPoPVerifier(ISSUER.validator(), profile="fapi2", clock=lambda: now)
    key = DPoPKey.generate("ES256")
    assert outcome(verifier, request(key, iat=now + 10)) == (200, "ok")
    assert outcome(verifier, request(key, iat=now + 61))[0] == 401
    wide = DPoPVerifier(ISSUER.validator(), profile="fapi2", clock_skew=60, clock=lambda: now)
    assert outcome(wide, request(key, iat=now + 59)) == (200, "ok")


# -- §5.3.2.1 / §5.3.3.1: nonces allowed, not imposed --------------------------------------------


def test_the_nonce_policy_stays_the_operators_choice() -> None:
    assert fapi2().config.nonce_policy.value == "off"
    demanding = fapi2(nonce_policy="always")
    result = demanding.authenticate(request(DPoPKey.generate("ES256")))
    assert result.rejection is not None and result.rejection.error.error == "use_dpop_nonce"


# -- the settings ----------------------------------------------------------------------------------


def test_settings_turn_the_profile_on_and_name_both_keys_on_a_conflict() -> None:
    accepted = {"profile", "algorithms", "mode", "token_validator"}
    values = environ_settings({"DPOP_PROFILE": "FAPI2"}, accepted=accepted)
    built = build_verifier({**values, "token_validator": ISSUER.validator()}, spell=environ_spell)
    assert built.config.profile == "fapi2" and built.config.algorithms == FAPI2_ALGORITHMS
    clash = environ_settings({"DPOP_PROFILE": "fapi2", "DPOP_MODE": "allow_bearer"}, accepted=accepted)
    with pytest.raises(SettingsError, match="DPOP_MODE, DPOP_PROFILE do not fit together: mode='allow_bearer'"):
        build_verifier({**clash, "token_validator": ISSUER.validator()}, spell=environ_spell)
    with pytest.raises(SettingsError, match="DPOP_PROFILE must be one of 'fapi2'"):
        environ_settings({"DPOP_PROFILE": "fapi1"}, accepted=accepted)


def test_the_metadata_of_a_fapi2_api_lists_its_algorithms_and_requires_dpop() -> None:
    verifier = fapi2(resource_metadata=ResourceMetadata(resource="https://api.test"))
    published = verifier.published_metadata()
    assert published is not None
    document = json.loads(published.body)
    assert document["dpop_signing_alg_values_supported"] == ["PS256", "ES256", "EdDSA"]
    assert document["dpop_bound_access_tokens_required"] is True
