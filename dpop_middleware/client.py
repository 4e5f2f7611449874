"""Client side of DPoP: keys, proofs (RFC 9449 §4) and the nonce bookkeeping of §8/§9.

``DPoPKey`` holds a private key and signs proofs with it. The private key is never part of the
object's ``repr``, cannot be pickled (or copied) by accident, and is only exported on explicit
request (:meth:`DPoPKey.private_pem`, :meth:`DPoPKey.private_jwk`)::

    key = DPoPKey.generate("ES256")                 # or EdDSA, RS256, PS256, ...
    key = DPoPKey.from_pem(pem_bytes)                # alg inferred from the key (RSA: PS256)
    key = DPoPKey.from_jwk(private_jwk_dict)         # alg from the JWK's "alg", else inferred
    key.public_jwk_dict()                            # {"kty": ..., ..., "alg": ...}: safe to publish
    key.proof("GET", "https://api.example/me", access_token=token, nonce=server_nonce)

Where the private key lives is the key's business: the proof is built by :func:`build_proof` from
any :class:`JWSSigner` (public JWK, thumbprint, ``sign_bytes``), and the HTTP plugins take any
:class:`ProofKey`. :class:`DPoPKey` is both; so are ``pkcs11_key.PKCS11Key`` (a key inside a
PKCS#11 token) and, as a ``ProofKey``, ``signer.SignerKey`` (a key in another process).

The HTTP client integrations (:mod:`dpop_middleware.httpx_auth`, :mod:`dpop_middleware.requests_auth`)
share :class:`NonceCache` (the latest ``DPoP-Nonce`` per origin) and :func:`nonce_to_retry` (is this
response a nonce challenge worth one retry?), both defined here without any HTTP library.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, runtime_checkable
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .core.jose import b64url_encode
from .core.keys import ALGORITHMS, jwk_thumbprint

__all__ = [
    "DPoPKey",
    "JWSSigner",
    "ProofKey",
    "build_proof",
    "NonceCache",
    "TokenRequestError",
    "TokenResponse",
    "nonce_to_retry",
    "origin_of",
    "parse_token_response",
    "proof_claims",
    "proof_headers",
    "sign_compact",
    "token_hash",
]

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


def _signature(key: PrivateKey, alg: str, signing_input: bytes) -> bytes:
    spec = ALGORITHMS[alg]
    if spec.kind == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey) and spec.hash is not None:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(spec.hash)))
        return r.to_bytes(spec.ecdsa_size, "big") + s.to_bytes(spec.ecdsa_size, "big")
    if spec.kind == "eddsa" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    if isinstance(key, rsa.RSAPrivateKey) and spec.hash is not None:
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(spec.hash), salt_length=spec.hash.digest_size)
            if spec.kind == "pss"
            else padding.PKCS1v15()
        )
        return key.sign(signing_input, pad, spec.hash)
    raise ValueError(f"key does not fit algorithm {alg}")


def _signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    head = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{body}"


def sign_compact(key: PrivateKey, alg: str, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """Sign ``claims`` as a compact JWS with ``header`` (which should name ``alg``)."""
    signing_input = _signing_input(header, claims)
    return f"{signing_input}.{b64url_encode(_signature(key, alg, signing_input.encode('ascii')))}"


@runtime_checkable
class JWSSigner(Protocol):
    """A key that signs, wherever its private half lives (memory, a PKCS#11 token, ...).

    :func:`build_proof` needs nothing more: the public JWK for the proof's header, and
    ``sign_bytes`` returning the JWS signature of ``alg`` (ECDSA as raw ``r||s``, RFC 7518 §3.4).
    """

    alg: str
    jkt: str
    public_jwk: dict[str, str]

    def sign_bytes(self, signing_input: bytes) -> bytes:
        """The JWS signature (not base64url-encoded) of ``signing_input``."""
        ...


@runtime_checkable
class ProofKey(Protocol):
    """What the httpx and requests plugins need of a key: its thumbprint and a fresh proof per request.

    :class:`DPoPKey`, :class:`~dpop_middleware.pkcs11_key.PKCS11Key` and
    :class:`~dpop_middleware.signer.SignerKey` all satisfy it.
    """

    alg: str
    jkt: str

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
        """A fresh DPoP proof for one request."""
        ...


def proof_claims(
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    ath: str | None = None,
    nonce: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
) -> dict[str, Any]:
    """The claims of a proof (§4.2): a fresh ``jti``, ``iat`` now, ``htu`` without query and fragment."""
    htu = url.split("#", 1)[0].split("?", 1)[0]
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method,
        "htu": htu,
        "iat": int(time.time() if iat is None else iat),
    }
    if access_token is not None:
        ath = token_hash(access_token)
    if ath is not None:
        claims["ath"] = ath
    if nonce is not None:
        claims["nonce"] = nonce
    return claims


def token_hash(access_token: str) -> str:
    """``ath``: base64url of the SHA-256 of the access token (§4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def build_proof(
    signer: JWSSigner,
    claims: Mapping[str, Any],
    extra_header: Mapping[str, Any] | None = None,
) -> str:
    """A compact ``dpop+jwt`` with ``signer``'s public JWK in the header, signed by ``signer``."""
    header: dict[str, Any] = {"typ": "dpop+jwt", "alg": signer.alg, "jwk": signer.public_jwk}
    if extra_header:
        header.update(extra_header)
    signing_input = _signing_input(header, claims)
    signature = signer.sign_bytes(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


class PublicJWKMixin:
    """``public_jwk_dict`` for every key class that has ``alg`` and ``public_jwk``."""

    __slots__ = ()
    alg: str
    public_jwk: dict[str, str]

    def public_jwk_dict(self, *, include_alg: bool = True) -> dict[str, str]:
        """The public JWK (a fresh dict: safe to publish, e.g. for registration), with ``alg`` by default."""
        jwk = dict(self.public_jwk)
        if include_alg:
            jwk["alg"] = self.alg
        return jwk


class DPoPKey(PublicJWKMixin):
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
    def generate(cls, alg: str = "ES256", *, rsa_bits: int = 2048) -> DPoPKey:
        """A fresh key for ``alg`` (ES256/384/512, EdDSA/Ed25519, RS*/PS* with ``rsa_bits``-bit RSA)."""
        key: PrivateKey
        if alg in _CURVE_FOR_ALG:
            key = ec.generate_private_key(_CURVE_FOR_ALG[alg])
        elif alg in ("EdDSA", "Ed25519"):
            key = ed25519.Ed25519PrivateKey.generate()
        elif alg in ALGORITHMS and alg[:2] in ("RS", "PS"):
            if rsa_bits < 2048:
                raise ValueError("RSA keys below 2048 bits are refused by verifiers (RFC 8725 §3.5)")
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        else:
            raise ValueError(f"unsupported algorithm {alg}")
        return cls(key, alg)

    @classmethod
    def from_pem(cls, pem: bytes | str, alg: str | None = None, password: bytes | None = None) -> DPoPKey:
        """Load a PKCS#8 / traditional PEM private key; ``alg`` defaults to :func:`default_alg` of the key."""
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            raise ValueError("unsupported private key type")
        return cls(key, alg or default_alg(key))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any] | str, alg: str | None = None) -> DPoPKey:
        """Load a private JWK (dict or JSON). ``alg`` defaults to the JWK's own ``alg``, else to the key's."""
        from jwcrypto.jwk import JWK

        data = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
        if not isinstance(data, dict) or "d" not in data:
            raise ValueError("a private JWK is required")
        if data.get("kty") not in ("EC", "OKP", "RSA"):
            raise ValueError("unsupported JWK key type")
        # ``generate`` would make jwcrypto invent a key instead of loading this one.
        key = JWK(**{k: v for k, v in data.items() if k != "generate"}).get_op_key("sign")
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            raise ValueError("unsupported private key type")
        chosen = alg or data.get("alg") or default_alg(key)
        if not isinstance(chosen, str):
            raise ValueError("alg must be a string")
        return cls(key, chosen)

    def private_pem(self) -> bytes:
        """Export the private key as unencrypted PKCS#8 PEM: only on explicit request."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def private_jwk(self) -> dict[str, Any]:
        """Export the private key as a JWK (with ``alg``): only on explicit request."""
        from jwcrypto.jwk import JWK

        exported: dict[str, Any] = JWK.from_pyca(self._key).export_private(as_dict=True)
        exported["alg"] = self.alg
        return exported

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
        claims = proof_claims(method, url, access_token=access_token, nonce=nonce, iat=iat, jti=jti)
        if extra_claims:
            claims.update(extra_claims)
        return build_proof(self, claims, extra_header)

    def sign_bytes(self, signing_input: bytes) -> bytes:
        """The JWS signature of ``signing_input`` (:class:`JWSSigner`)."""
        return _signature(self._key, self.alg, signing_input)

    def sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """Sign arbitrary ``header``/``claims`` with this key (tests, authorization servers)."""
        return sign_compact(self._key, self.alg, header, claims)

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("DPoPKey holds a private key and is not picklable; export it explicitly")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        # pickle and copy look for __reduce_ex__ first: close that door too.
        raise TypeError("DPoPKey holds a private key and is not picklable; export it explicitly")


def default_alg(key: PrivateKey) -> str:
    """The algorithm a key signs with when none is named: ES* by curve, EdDSA, PS256 for RSA."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise ValueError("unsupported elliptic curve")
        return by_curve[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "PS256"  # RFC 9449's examples' companion; RS256 must be asked for by name


def proof_headers(
    key: ProofKey, method: str, url: str, token: str | None = None, *, nonce: str | None = None
) -> dict[str, str]:
    """The headers of one request: ``DPoP`` (a fresh proof) and, with a token, ``Authorization: DPoP``.

    Without ``token`` (a token request) the proof has no ``ath`` and no ``Authorization`` is set,
    since the token endpoint's ``Authorization`` belongs to client authentication.
    """
    headers = {"DPoP": key.proof(method, url, access_token=token, nonce=nonce)}
    if token is not None:
        headers["Authorization"] = f"DPoP {token}"
    return headers


# -- nonces (RFC 9449 §8, §9) ---------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# RFC 9449 §8.1: nonce = 1*NQCHAR; NQCHAR = %x21 / %x23-5B / %x5D-7E (no space, quote, backslash).
_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,1024}")
_USE_DPOP_NONCE = re.compile(r"""error\s*=\s*"?use_dpop_nonce"?""", re.IGNORECASE)


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, with the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def valid_nonce(value: object) -> str | None:
    """``value`` if it has the syntax of a ``DPoP-Nonce`` (§8.1), else ``None`` (and it is ignored)."""
    if isinstance(value, str) and _NONCE.fullmatch(value.strip()):
        return value.strip()
    return None


class NonceCache:
    """The latest server nonce per origin (scheme, host, port); thread-safe, bounded.

    Share one between the auth plugins of a client so that the token endpoint's and each API's
    nonces are kept apart (a nonce is only good for the server that issued it).
    """

    def __init__(self, max_origins: int = 256) -> None:
        self._max = max(1, max_origins)
        self._nonces: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> str | None:
        """The nonce to put in the next proof for ``url``, if its server gave us one."""
        with self._lock:
            return self._nonces.get(origin_of(url))

    def remember(self, url: str, nonce: object) -> str | None:
        """Keep ``nonce`` (a ``DPoP-Nonce`` response header value) for ``url``'s origin; return it if valid."""
        checked = valid_nonce(nonce)
        if checked is None:
            return None
        origin = origin_of(url)
        with self._lock:
            self._nonces[origin] = checked
            self._nonces.move_to_end(origin)
            while len(self._nonces) > self._max:
                self._nonces.popitem(last=False)
        return checked

    def __repr__(self) -> str:
        return f"NonceCache(origins={len(self._nonces)})"


def nonce_to_retry(
    status: int, www_authenticate: Iterable[str], dpop_nonce: str | None, body: bytes | None = None
) -> str | None:
    """The nonce to retry with if this response is a nonce challenge, else ``None``.

    A resource server says ``401`` with ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` (§9); an
    authorization server says ``400`` with ``{"error": "use_dpop_nonce"}`` (§8). Either way the new
    nonce is in ``DPoP-Nonce``; without one there is nothing to retry with.
    """
    nonce = valid_nonce(dpop_nonce)
    if nonce is None:
        return None
    if status == 401 and any(_USE_DPOP_NONCE.search(value) for value in www_authenticate):
        return nonce
    if status == 400 and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        if isinstance(parsed, dict) and parsed.get("error") == "use_dpop_nonce":
            return nonce
    return None


# -- token responses -----------------------------------------------------------------------


class TokenRequestError(Exception):
    """The token endpoint refused (``error``/``description`` from its JSON body) or answered oddly."""

    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(f"token request failed ({status}): {error} {description}".strip())
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1) with ``token_type`` ``DPoP``; the token stays out of repr."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: float | None = None
    scope: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def parse_token_response(status: int, body: bytes) -> TokenResponse:
    """Check a token endpoint's answer and return it; raise :class:`TokenRequestError` otherwise.

    A ``token_type`` other than ``DPoP`` means the server ignored the proof and issued a token
    that is not sender-constrained: refused, since using it would silently downgrade to Bearer.
    """
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise TokenRequestError(status, "invalid_response", "token endpoint did not answer with a JSON object")
    if status != 200:
        error = parsed.get("error")
        description = parsed.get("error_description")
        raise TokenRequestError(
            status,
            error if isinstance(error, str) else "error",
            description if isinstance(description, str) else "",
        )
    token = parsed.get("access_token")
    token_type = parsed.get("token_type")
    if not isinstance(token, str) or not token:
        raise TokenRequestError(status, "invalid_response", "no access_token in the token response")
    if not isinstance(token_type, str) or token_type.lower() != "dpop":
        raise TokenRequestError(status, "not_dpop_bound", "the server issued a token that is not DPoP-bound")
    expires_in = parsed.get("expires_in")
    scope = parsed.get("scope")
    refresh = parsed.get("refresh_token")
    return TokenResponse(
        access_token=token,
        token_type="DPoP",  # noqa: S106 - a scheme name, not a secret
        expires_in=float(expires_in) if isinstance(expires_in, (int, float)) else None,
        scope=scope if isinstance(scope, str) else None,
        refresh_token=refresh if isinstance(refresh, str) else None,
        raw=parsed,
    )
