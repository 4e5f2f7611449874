"""Verification of one DPoP proof JWT (RFC 9449 §4.3), pure: no I/O, the clock passed in.

The checks run cheapest first and the signature before any claim is trusted:
syntax and header (``typ``, ``alg``, ``jwk``, ``crit``) -> signature with the embedded key ->
claims (``jti``, ``htm``, ``htu``, ``iat``, ``ath``, ``nonce``). The replay store is not touched
here: the orchestrator writes it last, once everything else has passed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import VerifierConfig
from .errors import InvalidDPoPProofError, InvalidRequestError, UseDPoPNonceError
from .htu import HTUError, normalize_htu
from .jose import JOSEFormatError, b64url_decode, b64url_encode_bytes, numeric_date, parse_json_object, split_compact
from .keys import ALGORITHMS, AlgSpec, JWKError, PublicKey, check_alg_key, import_public_jwk, verify_signature
from .nonce import SAFE_METHODS, NoncePolicy

__all__ = ["VerifiedProof", "access_token_hash", "verify_proof"]

_TYP = frozenset({"dpop+jwt", "application/dpop+jwt"})  # RFC 7515 §4.1.9: media types, case-insensitive


@dataclass(slots=True)  # internal, per request: a frozen dataclass's init is measurably slower
class VerifiedProof:
    """A proof that passed every check but replay."""

    key: PublicKey
    jti: str
    htm: str
    htu: str  # normalized
    iat: float
    nonce: str | None
    claims: Mapping[str, Any]
    replay_key: bytes
    replay_ttl: float
    next_nonce: str | None  # a fresh nonce to hand out on the response, if any


def access_token_hash(token: str) -> bytes:
    """SHA-256 of the access token's ASCII octets (RFC 9449 §4.2 ``ath``; also our cache key)."""
    return hashlib.sha256(token.encode("ascii")).digest()


def _bad(reason: str, description: str = "Invalid DPoP proof", **diagnostics: Any) -> InvalidDPoPProofError:
    return InvalidDPoPProofError(reason, description, diagnostics=diagnostics)


class _HeaderRejected(Exception):
    def __init__(self, reason: str, description: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description


@functools.lru_cache(maxsize=4096)
def _checked_header(
    header_b64: str,
    algorithms: tuple[str, ...],
    min_rsa_bits: int,
    eddsa_curves: tuple[str, ...] = ("Ed25519", "Ed448"),
) -> tuple[AlgSpec, PublicKey]:
    """Decode and check a proof's protected header: its algorithm spec and imported key.

    Memoized: a client signs every proof with the same key, so its header segment is byte-for-byte
    the same each time, and a returning client's header work becomes one cache lookup. The policy
    (allowlist, RSA floor) is part of the key, since it is part of the answer. Only headers that pass
    every check are remembered (a rejection raises, and ``lru_cache`` keeps no exception).
    """
    header = parse_json_object(b64url_decode(header_b64))
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYP:
        raise _HeaderRejected("wrong_typ", "DPoP proof must have typ dpop+jwt")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise _HeaderRejected("alg_not_allowed", "DPoP proof algorithm not allowed")
    if "crit" in header:
        # We understand no extension, so RFC 7515 §4.1.11 obliges us to reject.
        raise _HeaderRejected("crit_not_supported", "Unsupported critical header parameter")
    spec = ALGORITHMS[alg]
    jwk = header.get("jwk")
    try:
        key = import_public_jwk(jwk, min_rsa_bits=min_rsa_bits)
        check_alg_key(spec, key)
        if spec.kind == "eddsa" and key.crv not in eddsa_curves:
            raise JWKError("curve_not_allowed")
        if isinstance(jwk, dict) and "alg" in jwk and jwk["alg"] != alg:
            raise JWKError("alg_key_mismatch")
    except JWKError as exc:
        raise _HeaderRejected(exc.reason, "DPoP proof key unusable") from None
    return spec, key


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    token_hash: bytes | None,
    now: float,
    config: VerifierConfig,
) -> VerifiedProof:
    """Verify ``proof`` for a request ``method url`` presenting a token whose SHA-256 is ``token_hash``.

    ``token_hash`` is ``None`` only at a token endpoint (no access token, so no ``ath``).
    Raises :class:`InvalidDPoPProofError` or :class:`UseDPoPNonceError`.
    """
    if len(proof) > config.max_proof_bytes:
        raise _bad("proof_too_large", "DPoP proof too large")
    try:
        header_b64, payload_b64, signature_b64 = split_compact(proof)
        spec, key = _checked_header(header_b64, config.algorithms, config.min_rsa_bits, config.eddsa_curves)
        claims = parse_json_object(b64url_decode(payload_b64), allow_duplicates=True)
        signature = b64url_decode(signature_b64)
    except _HeaderRejected as exc:
        raise _bad(exc.reason, exc.description) from None
    except (JOSEFormatError, JWKError) as exc:
        raise _bad(exc.reason) from None

    # The one expensive step, after every syntactic check and before any claim is believed.
    if not verify_signature(spec, key, f"{header_b64}.{payload_b64}".encode("ascii"), signature):
        raise _bad("bad_signature", "DPoP proof signature invalid")

    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _bad("jti_missing", "DPoP proof jti missing")
    if len(jti) > config.max_jti_length:
        raise _bad("jti_too_long", "DPoP proof jti too long")
    htm = claims.get("htm")
    if not isinstance(htm, str):
        raise _bad("htm_missing", "DPoP proof htm missing")
    if htm != method:  # RFC 9110 §9.1: methods are case-sensitive
        raise _bad("htm_mismatch", "DPoP proof htm mismatch", expected=method, received=htm[:32])
    htu = claims.get("htu")
    if not isinstance(htu, str):
        raise _bad("htu_missing", "DPoP proof htu missing")
    try:
        expected_htu = normalize_htu(url)
    except HTUError:
        # The request's own URL is unusable (a forged Host header, say): the client's fault.
        raise InvalidRequestError("bad_request_url", "Request URL cannot be determined") from None
    try:
        received_htu = normalize_htu(htu)
    except HTUError:
        raise _bad("htu_mismatch", "DPoP proof htu mismatch", expected=expected_htu, received=htu[:512]) from None
    if received_htu != expected_htu:
        raise _bad("htu_mismatch", "DPoP proof htu mismatch", expected=expected_htu, received=received_htu)
    iat = numeric_date(claims.get("iat"))
    if iat is None:
        raise _bad("iat_missing", "DPoP proof iat missing")

    if token_hash is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str):
            raise _bad("ath_missing", "DPoP proof ath missing")
        if not hmac.compare_digest(ath.encode("utf-8", "replace"), b64url_encode_bytes(token_hash)):
            raise _bad("ath_mismatch", "DPoP proof ath does not match the access token")

    # iat window and nonces (RFC 9449 §11.1): the nonce policy decides who vouches for freshness.
    offset = iat - now
    iat_reason = None
    if offset < -(config.max_age + config.clock_skew):
        iat_reason = "iat_too_old"
    elif offset > config.clock_skew:
        iat_reason = "iat_in_future"
    policy = config.nonce_policy
    keyring = config.nonce_keyring
    ttl = config.replay_ttl
    nonce = claims.get("nonce")
    next_nonce = None
    if policy is not NoncePolicy.OFF:
        if policy is NoncePolicy.HEAL_IAT and iat_reason == "iat_in_future" and offset > 2 * keyring.step_seconds:
            # A nonce heals a clock that runs ahead by less than a nonce's lifetime, no more (so no
            # nonce is asked for): the replay entry must live until the iat has aged out of the
            # window, and an unbounded iat would let one proof pin an entry (and its memory) for ever.
            raise _bad("iat_in_future", "DPoP proof iat outside the acceptable window", iat_offset=round(offset, 3))
        check = keyring.check(nonce, now)
        must_have_nonce = (
            policy is NoncePolicy.ALWAYS
            or (policy is NoncePolicy.UNSAFE_METHODS and method not in SAFE_METHODS)
            or (policy is NoncePolicy.HEAL_IAT and iat_reason is not None)
        )
        if must_have_nonce and not check.valid:
            raise UseDPoPNonceError(keyring.issue(now), check.reason, diagnostics={"iat_offset": round(offset, 3)})
        if policy is NoncePolicy.HEAL_IAT:
            if iat_reason is not None:
                iat_reason = None  # the nonce's time stands in for iat
            # Remember the proof for as long as it could pass again: on iat alone until iat leaves
            # the window (a future iat enters it later), and through the nonce while the nonce
            # lives (an iat that aged out), whichever way it was accepted this time.
            ttl = max(ttl, offset + config.max_age + 2 * config.clock_skew)
            if check.valid:
                ttl = max(ttl, check.expires_at - now + config.clock_skew)
        if not check.current:
            next_nonce = keyring.issue(now)
    if iat_reason is not None:
        raise _bad(iat_reason, "DPoP proof iat outside the acceptable window", iat_offset=round(offset, 3))

    replay_key = hashlib.sha256(f"{key.jkt}\x00{htm}\x00{received_htu}\x00{jti}".encode()).digest()[:16]
    return VerifiedProof(
        key=key,
        jti=jti,
        htm=htm,
        htu=received_htu,
        iat=iat,
        nonce=nonce if isinstance(nonce, str) else None,
        claims=claims,
        replay_key=replay_key,
        replay_ttl=ttl,
        next_nonce=next_nonce,
    )
