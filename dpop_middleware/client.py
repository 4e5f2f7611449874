"""Client side of DPoP: keys and proofs (RFC 9449 §4).

``DPoPKey`` holds a private key and signs proofs with it. The private key is never part of the
object's ``repr``, cannot be pickled by accident, and is only exported on explicit request.
HTTP client integrations (httpx, requests) build on :meth:`DPoPKey.proof`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .core.jose import b64url_encode
from .core.keys import ALGORITHMS, jwk_thumbprint

__all__ = ["DPoPKey", "sign_compact"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_CURVE_FOR_ALG = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
_CURVE_NAMES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}


def _int_b64(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def public_jwk_of(key: PrivateKey) -> dict[str, str]:
    """The public JWK (required members only) of a private key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        crv, size = _CURVE_NAMES[key.curve.name]
        return {"kty": "EC", "crv": crv, "x": _int_b64(numbers.x, size), "y": _int_b64(numbers.y, size)}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    rsa_numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "n": _int_b64(rsa_numbers.n), "e": _int_b64(rsa_numbers.e)}


def sign_compact(key: PrivateKey, alg: str, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """Sign ``claims`` as a compact JWS with ``header`` (which should name ``alg``)."""
    spec = ALGORITHMS[alg]
    head = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode("ascii")
    if spec.kind == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey) and spec.hash is not None:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(spec.hash)))
        signature = r.to_bytes(spec.ecdsa_size, "big") + s.to_bytes(spec.ecdsa_size, "big")
    elif spec.kind == "eddsa" and isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(signing_input)
    elif isinstance(key, rsa.RSAPrivateKey) and spec.hash is not None:
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(spec.hash), salt_length=spec.hash.digest_size)
            if spec.kind == "pss"
            else padding.PKCS1v15()
        )
        signature = key.sign(signing_input, pad, spec.hash)
    else:
        raise ValueError(f"key does not fit algorithm {alg}")
    return f"{head}.{body}.{b64url_encode(signature)}"


class DPoPKey:
    """A client's DPoP key pair and the proofs it signs.

    >>> key = DPoPKey.generate("ES256")
    >>> proof = key.proof("GET", "https://api.example/me", access_token="...")
    """

    __slots__ = ("_key", "alg", "jkt", "public_jwk")

    def __init__(self, private_key: PrivateKey, alg: str) -> None:
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg}")
        self._key = private_key
        self.alg = alg
        self.public_jwk = public_jwk_of(private_key)
        self.jkt = jwk_thumbprint(self.public_jwk)
        # Fail now, not at the first proof, if the key does not fit the algorithm.
        sign_compact(private_key, alg, {"alg": alg}, {})

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        """A fresh key for ``alg`` (ES256/384/512, EdDSA/Ed25519, RS*/PS* with 2048-bit RSA)."""
        key: PrivateKey
        if alg in _CURVE_FOR_ALG:
            key = ec.generate_private_key(_CURVE_FOR_ALG[alg])
        elif alg in ("EdDSA", "Ed25519"):
            key = ed25519.Ed25519PrivateKey.generate()
        elif alg[:2] in ("RS", "PS"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"unsupported algorithm {alg}")
        return cls(key, alg)

    @classmethod
    def from_pem(cls, pem: bytes | str, alg: str, password: bytes | None = None) -> DPoPKey:
        """Load a PKCS#8 / traditional PEM private key."""
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            raise ValueError("unsupported private key type")
        return cls(key, alg)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any] | str, alg: str | None = None) -> DPoPKey:
        """Load a private JWK (dict or JSON). ``alg`` defaults to the JWK's own ``alg``."""
        from jwcrypto.jwk import JWK

        data = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
        if "d" not in data:
            raise ValueError("a private JWK is required")
        chosen = alg or data.get("alg")
        if not isinstance(chosen, str):
            raise ValueError("alg is required")
        key = JWK(**{k: v for k, v in data.items() if k != "generate"}).get_op_key("sign")
        return cls(key, chosen)

    def private_pem(self) -> bytes:
        """Export the private key as unencrypted PKCS#8 PEM: only on explicit request."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        extra_header: Mapping[str, Any] | None = None,
    ) -> str:
        """A fresh proof for one request. Query and fragment are stripped from ``htu`` (§4.2)."""
        htu = url.split("#", 1)[0].split("?", 1)[0]
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": method,
            "htu": htu,
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            claims["ath"] = b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        if extra_claims:
            claims.update(extra_claims)
        header: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        if extra_header:
            header.update(extra_header)
        return sign_compact(self._key, self.alg, header, claims)

    def sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """Sign arbitrary ``header``/``claims`` with this key (tests, authorization servers)."""
        return sign_compact(self._key, self.alg, header, claims)

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("DPoPKey holds a private key and is not picklable; export it explicitly")
