"""Public JWKs: strict import, RFC 7638 thumbprints, alg/key consistency and signature checks.

The hot path of every DPoP request goes through here, so the work is arranged to be done once per
key: the RFC 7638 canonical JSON of a key's required members doubles as the cache key (so a key
seen before costs one cache lookup, not an import), and its SHA-256 is the thumbprint ``jkt``.
Signatures are checked with ``cryptography`` directly, with the algorithm parameters that RFC 7518
fixes (raw ``r||s`` ECDSA signatures of exact length, PSS salt = hash length).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .jose import b64url_decode, b64url_encode

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "AlgSpec",
    "JWKError",
    "PublicKey",
    "check_alg_key",
    "import_public_jwk",
    "jwk_thumbprint",
    "verify_signature",
]

VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


class JWKError(ValueError):
    """The JWK is unusable; ``reason`` is a stable code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AlgSpec:
    """What a JWS ``alg`` requires of its key and how its signature is checked."""

    name: str
    kty: str
    curves: tuple[str, ...]
    kind: str  # "ecdsa", "eddsa", "pkcs1" or "pss"
    hash: hashes.HashAlgorithm | None
    ecdsa_size: int = 0  # bytes of r (and of s) in a raw ECDSA signature


_SHA256, _SHA384, _SHA512 = hashes.SHA256(), hashes.SHA384(), hashes.SHA512()

#: Every asymmetric JWS algorithm we can verify. ``none`` and HS* are absent on purpose: a proof's
#: key is public, so a MAC "signed" with it proves nothing.
ALGORITHMS: dict[str, AlgSpec] = {
    "ES256": AlgSpec("ES256", "EC", ("P-256",), "ecdsa", _SHA256, 32),
    "ES384": AlgSpec("ES384", "EC", ("P-384",), "ecdsa", _SHA384, 48),
    "ES512": AlgSpec("ES512", "EC", ("P-521",), "ecdsa", _SHA512, 66),
    "EdDSA": AlgSpec("EdDSA", "OKP", ("Ed25519", "Ed448"), "eddsa", None),
    "Ed25519": AlgSpec("Ed25519", "OKP", ("Ed25519",), "eddsa", None),
    "RS256": AlgSpec("RS256", "RSA", (), "pkcs1", _SHA256),
    "RS384": AlgSpec("RS384", "RSA", (), "pkcs1", _SHA384),
    "RS512": AlgSpec("RS512", "RSA", (), "pkcs1", _SHA512),
    "PS256": AlgSpec("PS256", "RSA", (), "pss", _SHA256),
    "PS384": AlgSpec("PS384", "RSA", (), "pss", _SHA384),
    "PS512": AlgSpec("PS512", "RSA", (), "pss", _SHA512),
}

DEFAULT_ALGORITHMS: tuple[str, ...] = (
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
)


# Pre-built signature parameters by alg: constructing them per request is measurable.
_ECDSA = {name: ec.ECDSA(spec.hash) for name, spec in ALGORITHMS.items() if spec.kind == "ecdsa" and spec.hash}
_RSA_PADDING: dict[str, padding.AsymmetricPadding] = {
    name: padding.PSS(mgf=padding.MGF1(spec.hash), salt_length=spec.hash.digest_size)
    if spec.kind == "pss"
    else padding.PKCS1v15()
    for name, spec in ALGORITHMS.items()
    if spec.kind in ("pss", "pkcs1") and spec.hash
}

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
_OKP_SIZES = {"Ed25519": 32, "Ed448": 57}

# Members that only a private or symmetric key has, and jwcrypto's ``generate`` (which would make
# jwcrypto create a fresh key if this dict ever reached ``JWK(**jwk)``).
_FORBIDDEN_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "generate"})
_B64URL_VALUE = re.compile(r"[A-Za-z0-9_-]{1,2048}")


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An imported, validated public key with its RFC 7638 thumbprint."""

    kty: str
    crv: str | None
    key: VerifyingKey
    jkt: str
    bits: int
    canonical: str  # RFC 7638 canonical JSON of the required members
    public_jwk: Mapping[str, str]  # the required members, read-only


def _member(jwk: Mapping[str, Any], name: str) -> str:
    value = jwk.get(name)
    if not isinstance(value, str) or _B64URL_VALUE.fullmatch(value) is None:
        raise JWKError("jwk_bad_member")
    return value


# Base64url characters whose value is below 16: as the second character they leave the first
# decoded byte zero when the first character is "A".
_HIGH_BITS_ZERO = frozenset("ABCDEFGHIJKLMNOP")


def _rsa_int(jwk: Mapping[str, Any], name: str) -> str:
    """An RSA ``n``/``e`` member, which RFC 7518 §6.3.1.1 wants as minimal big-endian octets.

    A leading zero octet would give the same key a second spelling, hence a second RFC 7638
    thumbprint (one key, two bindings). Read off the text: the first octet is zero exactly when it
    starts with "A" followed by a character worth less than 16.
    """
    value = _member(jwk, name)
    if value[0] == "A" and (len(value) == 1 or value[1] in _HIGH_BITS_ZERO):
        raise JWKError("jwk_rsa_not_minimal")
    return value


def _canonical(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3.2: the required members, lexicographic order, no whitespace.

    Every value is checked to be base64url (or a known name) first, so plain concatenation is
    exactly the canonical JSON serialization.
    """
    kty = jwk.get("kty")
    if kty == "EC":
        crv = jwk.get("crv")
        # A member may hold any JSON type: test the type before a dict lookup (a list is unhashable).
        if not isinstance(crv, str) or crv not in _CURVES:
            raise JWKError("jwk_unsupported_curve")
        return f'{{"crv":"{crv}","kty":"EC","x":"{_member(jwk, "x")}","y":"{_member(jwk, "y")}"}}'
    if kty == "OKP":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in _OKP_SIZES:
            raise JWKError("jwk_unsupported_curve")
        return f'{{"crv":"{crv}","kty":"OKP","x":"{_member(jwk, "x")}"}}'
    if kty == "RSA":
        return f'{{"e":"{_rsa_int(jwk, "e")}","kty":"RSA","n":"{_rsa_int(jwk, "n")}"}}'
    if kty == "oct":
        raise JWKError("jwk_symmetric")
    raise JWKError("jwk_unsupported_kty")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK SHA-256 thumbprint of a public EC, OKP or RSA key."""
    return b64url_encode(hashlib.sha256(_canonical(jwk).encode("ascii")).digest())


def _b64_int(value: str) -> int:
    return int.from_bytes(b64url_decode(value), "big")


MAX_RSA_BITS = 8192
MAX_RSA_EXPONENT_BITS = 32  # 65537 is 17 bits; RFC 3447 does not need more


@functools.lru_cache(maxsize=4096)
def _imported_key(canonical: str, min_rsa_bits: int) -> PublicKey:
    """Import the key whose RFC 7638 canonical JSON ``_canonical`` has built (so checked).

    Memoized by that canonical JSON (and the policy): a returning client's key is imported once.
    The canonical JSON holds every member the import needs, so it is the whole input. Only keys
    that import cleanly are kept (a refusal raises); the bound keeps a flood of keys from growing it.
    """
    jwk: dict[str, str] = json.loads(canonical)
    public = MappingProxyType(jwk)  # exactly the required members, in RFC 7638 order
    kty = jwk["kty"]
    jkt = b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())
    try:
        if kty == "EC":
            crv = jwk["crv"]
            curve, size = _CURVES[crv]
            x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
            if len(x) != size or len(y) != size:
                raise JWKError("jwk_bad_member")
            # Raises ValueError for a point not on the curve.
            ec_key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
            return PublicKey("EC", crv, ec_key, jkt, curve.key_size, canonical, public)
        if kty == "OKP":
            crv = jwk["crv"]
            raw = b64url_decode(jwk["x"])
            if len(raw) != _OKP_SIZES[crv]:
                raise JWKError("jwk_bad_member")
            okp_key: VerifyingKey = (
                ed25519.Ed25519PublicKey.from_public_bytes(raw)
                if crv == "Ed25519"
                else ed448.Ed448PublicKey.from_public_bytes(raw)
            )
            return PublicKey("OKP", crv, okp_key, jkt, len(raw) * 8, canonical, public)
        n, e = _b64_int(jwk["n"]), _b64_int(jwk["e"])
        if n.bit_length() < min_rsa_bits:
            raise JWKError("jwk_rsa_too_small")
        # Verification cost grows with the modulus and the public exponent, both chosen by whoever
        # signed the proof: cap them so an unauthenticated proof cannot buy milliseconds of CPU.
        if n.bit_length() > MAX_RSA_BITS or e.bit_length() > MAX_RSA_EXPONENT_BITS:
            raise JWKError("jwk_rsa_too_costly")
        rsa_key = rsa.RSAPublicNumbers(e, n).public_key()
        return PublicKey("RSA", None, rsa_key, jkt, n.bit_length(), canonical, public)
    except JWKError:
        raise
    except (ValueError, TypeError) as exc:
        raise JWKError("jwk_invalid_key") from exc


def import_public_jwk(jwk: Any, *, min_rsa_bits: int = 2048) -> PublicKey:
    """Import a public JWK given as a JSON object, refusing private, symmetric and odd keys.

    Optional members are honoured where they restrict use: ``use`` must be ``sig`` and ``key_ops``
    must allow ``verify`` when present. ``x5c``/``x5u``/``kid`` are ignored, never fetched.
    """
    if not isinstance(jwk, dict):
        raise JWKError("jwk_not_object")
    if not _FORBIDDEN_MEMBERS.isdisjoint(jwk):
        raise JWKError("jwk_private_or_symmetric")
    if "use" in jwk and jwk["use"] != "sig":
        raise JWKError("jwk_wrong_use")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            raise JWKError("jwk_wrong_key_ops")
    return _imported_key(_canonical(jwk), min_rsa_bits)


def check_alg_key(spec: AlgSpec, key: PublicKey) -> None:
    """Raise unless ``key`` is of the type and curve that ``spec`` requires (RFC 7518 §3)."""
    if key.kty != spec.kty or (spec.curves and key.crv not in spec.curves):
        raise JWKError("alg_key_mismatch")


def verify_signature(spec: AlgSpec, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    """Check a JWS signature; ``False`` for any signature that does not verify.

    ``key`` must have passed :func:`check_alg_key` for ``spec`` (so its type fits the algorithm);
    no ``isinstance`` here: on cryptography's ABCs it is slow enough to show per request.
    """
    try:
        if spec.kind == "ecdsa":
            size = spec.ecdsa_size
            if len(signature) != 2 * size or key.kty != "EC":
                return False
            # JOSE sends raw r||s (RFC 7518 §3.4); cryptography wants DER.
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            cast(ec.EllipticCurvePublicKey, key.key).verify(der, signing_input, _ECDSA[spec.name])
        elif spec.kind == "eddsa":
            if key.kty != "OKP":
                return False
            cast(ed25519.Ed25519PublicKey, key.key).verify(signature, signing_input)
        else:
            if key.kty != "RSA" or spec.hash is None:
                return False
            cast(rsa.RSAPublicKey, key.key).verify(signature, signing_input, _RSA_PADDING[spec.name], spec.hash)
    except InvalidSignature:
        return False
    return True
