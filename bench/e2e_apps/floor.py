"""The cryptographic floor: the one signature check of the request's DPoP proof, and nothing else.

The ``floor`` variant of each benchmark app runs this in front of the endpoint instead of the DPoP
layer. It is what any DPoP implementation on ``cryptography`` must pay per request (decode the
signature, for ECDSA re-encode r||s as DER, one ``verify`` with the key already loaded), measured in
the same server, under the same load and CPU cache pressure as the real layer. It checks nothing
else (no claims, no token, no replay) and is not a security control: a benchmark yardstick only.
The benchmark's proofs are well-formed ES256, EdDSA (Ed25519), RS256 or PS256 JWSs; anything else
is answered 401.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)
_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(_SHA256), salt_length=32)

Check = Callable[[bytes, bytes], None]  # (signing input, signature) -> None, raises InvalidSignature
# Checks by header segment: the raw check starts from a loaded key, like bench/verify.py's "raw".
_CHECKS: dict[str, Check] = {}


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _int(segment: str) -> int:
    return int.from_bytes(_b64(segment), "big")


def _check(header_b64: str) -> Check:
    """The signature check for one client key, built once from the proof's header."""
    check = _CHECKS.get(header_b64)
    if check is not None:
        return check
    header = json.loads(_b64(header_b64))
    alg, jwk = header["alg"], header["jwk"]
    if alg == "ES256":
        ec_key = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()).public_key()

        def check(data: bytes, sig: bytes) -> None:
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            ec_key.verify(der, data, _ECDSA_SHA256)

    elif alg in ("EdDSA", "Ed25519"):
        ed_key = ed25519.Ed25519PublicKey.from_public_bytes(_b64(jwk["x"]))

        def check(data: bytes, sig: bytes) -> None:
            ed_key.verify(sig, data)

    elif alg in ("RS256", "PS256"):
        rsa_key = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        pad = _PKCS1 if alg == "RS256" else _PSS

        def check(data: bytes, sig: bytes) -> None:
            rsa_key.verify(sig, data, pad, _SHA256)

    else:
        raise ValueError("algorithm not in the benchmark")
    _CHECKS[header_b64] = check
    return check


def signature_ok(proof: str | None) -> bool:
    """Whether ``proof`` is a JWS whose signature verifies with its own header's key."""
    if not proof:
        return False
    try:
        head, body, sig_b64 = proof.split(".")
        _check(head)(f"{head}.{body}".encode("ascii"), _b64(sig_b64))
    except (InvalidSignature, ValueError, KeyError, TypeError, binascii.Error):
        return False
    return True
