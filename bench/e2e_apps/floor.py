"""The cryptographic floor: the one signature check of the request's DPoP proof, and nothing else.

The ``floor`` variant of each benchmark app runs this in front of the endpoint instead of the DPoP
layer. It is what any DPoP implementation on ``cryptography`` must pay per request (decode the
signature, re-encode ECDSA's r||s as DER, one ``verify`` with the key already loaded), measured in
the same server, under the same load and CPU cache pressure as the real layer. It checks nothing
else (no claims, no token, no replay) and is not a security control: a benchmark yardstick only.
The benchmark's proofs are ES256 and well-formed; anything else is answered 401.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# Keys by header segment: the raw check starts from a loaded key, like bench/verify.py's "raw".
_KEYS: dict[str, ec.EllipticCurvePublicKey] = {}


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _key(header_b64: str) -> ec.EllipticCurvePublicKey:
    key = _KEYS.get(header_b64)
    if key is None:
        jwk = json.loads(_b64(header_b64))["jwk"]
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_b64(jwk["x"]), "big"), int.from_bytes(_b64(jwk["y"]), "big"), ec.SECP256R1()
        )
        key = _KEYS[header_b64] = numbers.public_key()
    return key


def signature_ok(proof: str | None) -> bool:
    """Whether ``proof`` is an ES256 JWS whose signature verifies with its own header's key."""
    if not proof:
        return False
    try:
        head, body, sig_b64 = proof.split(".")
        key = _key(head)
        sig = _b64(sig_b64)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        key.verify(der, f"{head}.{body}".encode("ascii"), _ECDSA_SHA256)
    except (InvalidSignature, ValueError, KeyError, TypeError, binascii.Error):
        return False
    return True
