"""JWT access tokens (RFC 9068), pure: parsing, key choice, signature and claim checks.

Validators that differ only in where their keys come from (a JWKS given as data, or fetched and
cached) share every decision made here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidTokenError
from .jose import CompactJWS, JOSEFormatError, numeric_date, parse_compact
from .keys import ALGORITHMS, AlgSpec, JWKError, PublicKey, check_alg_key, import_public_jwk, verify_signature

__all__ = ["JWTPolicy", "KeySet", "ParsedAccessToken", "check_claims", "parse_access_token", "verify_access_token"]

_AT_TYP = frozenset({"at+jwt", "application/at+jwt"})
DEFAULT_TOKEN_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)


@dataclass(frozen=True)
class JWTPolicy:
    """What a JWT access token must satisfy.

    ``require_typ`` enforces ``typ: at+jwt`` as RFC 9068 §4 asks; turn it off only for an
    authorization server that cannot send it. ``leeway`` applies to ``exp``, ``nbf`` and ``iat``.
    """

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = DEFAULT_TOKEN_ALGORITHMS
    leeway: float = 30.0
    require_typ: bool = True
    max_token_bytes: int = 16384

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("issuer is required")
        if not self.audiences:
            raise ValueError("at least one audience is required")
        bad = [a for a in self.algorithms if a not in ALGORITHMS]
        if bad:
            raise ValueError(f"unsupported token algorithms {bad!r}")


@dataclass(frozen=True, slots=True)
class ParsedAccessToken:
    jws: CompactJWS
    spec: AlgSpec
    kid: str | None


class KeySet:
    """Public keys from a JWKS document, indexed by ``kid``. Keys that cannot verify are skipped.

    ``skipped`` lists each unusable entry as ``(kid, reason)`` (``kid`` ``None`` when it has no
    string one) so the validators can log it: one odd entry must not take the good keys down.
    """

    def __init__(self, jwks: Any) -> None:
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise ValueError("a JWKS is an object with a 'keys' array")
        self.keys: list[tuple[str | None, str | None, PublicKey]] = []
        self.skipped: list[tuple[str | None, str]] = []
        for entry in jwks["keys"]:
            if not isinstance(entry, dict):
                self.skipped.append((None, "jwk_not_object"))
                continue
            if entry.get("use") == "enc":
                continue  # encryption keys share JWKS documents; they are not ours to use
            kid = entry.get("kid")
            alg = entry.get("alg")
            try:
                # kid and alg narrow which tokens a key may verify: one we cannot read must not
                # widen the key to every token instead.
                if "kid" in entry and not isinstance(kid, str):
                    raise JWKError("jwk_bad_kid")
                if "alg" in entry and not isinstance(alg, str):
                    raise JWKError("jwk_bad_alg")
                key = import_public_jwk(entry)
            except JWKError as exc:
                self.skipped.append((kid if isinstance(kid, str) else None, exc.reason))
                continue
            self.keys.append((kid, alg, key))

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, kid: str | None, spec: AlgSpec) -> list[PublicKey]:
        """Keys that may have signed a token with this ``kid`` and ``alg``."""
        found = []
        for key_kid, key_alg, key in self.keys:
            if kid is not None and key_kid != kid:
                continue
            if key_alg is not None and key_alg != spec.name:
                continue
            try:
                check_alg_key(spec, key)
            except JWKError:
                continue
            found.append(key)
        return found

    def has_kid(self, kid: str | None) -> bool:
        return kid is None or any(key_kid == kid for key_kid, _, _ in self.keys)


def parse_access_token(token: str, policy: JWTPolicy) -> ParsedAccessToken:
    """Parse a JWT access token and check its header. Verifies nothing yet."""
    if len(token) > policy.max_token_bytes:
        raise InvalidTokenError("token_too_large", "Access token too large")
    try:
        jws = parse_compact(token)
    except JOSEFormatError:
        raise InvalidTokenError("token_malformed", "Malformed access token") from None
    header = jws.header
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        raise InvalidTokenError("token_alg_not_allowed", "Access token algorithm not allowed")
    if "crit" in header:
        raise InvalidTokenError("token_crit_not_supported", "Unsupported critical header parameter")
    if policy.require_typ:
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _AT_TYP:
            raise InvalidTokenError("token_wrong_typ", "Access token must have typ at+jwt")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidTokenError("token_malformed", "Malformed access token")
    return ParsedAccessToken(jws, ALGORITHMS[alg], kid)


def verify_access_token(parsed: ParsedAccessToken, keys: Iterable[PublicKey]) -> None:
    """Raise unless one of ``keys`` verifies the token's signature."""
    for key in keys:
        if verify_signature(parsed.spec, key, parsed.jws.signing_input, parsed.jws.signature):
            return
    raise InvalidTokenError("token_bad_signature", "Access token signature invalid")


def _numeric(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    number = numeric_date(value)
    if number is None:
        raise InvalidTokenError(f"token_{name}_invalid", "Access token time claims invalid")
    return number


def check_claims(claims: Mapping[str, Any], policy: JWTPolicy, now: float) -> None:
    """RFC 9068 §4: issuer, audience and time claims; ``cnf`` must be an object when present."""
    if claims.get("iss") != policy.issuer:
        raise InvalidTokenError("token_wrong_issuer", "Access token issuer not accepted")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in policy.audiences for a in audiences):
        raise InvalidTokenError("token_wrong_audience", "Access token audience not accepted")
    exp = _numeric(claims, "exp", True)
    if exp is not None and now >= exp + policy.leeway:
        raise InvalidTokenError("token_expired", "Access token expired")
    nbf = _numeric(claims, "nbf", False)
    if nbf is not None and now + policy.leeway < nbf:
        raise InvalidTokenError("token_not_yet_valid", "Access token not yet valid")
    iat = _numeric(claims, "iat", False)
    if iat is not None and now + policy.leeway < iat:
        raise InvalidTokenError("token_iat_in_future", "Access token issued in the future")
    if "cnf" in claims and not isinstance(claims["cnf"], Mapping):
        raise InvalidTokenError("cnf_malformed", "Malformed token confirmation claim")
    for name in ("scope",):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidTokenError("token_scope_invalid", "Access token scope claim invalid")
    scp = claims.get("scp")
    scp_ok = isinstance(scp, str) or (isinstance(scp, list) and all(isinstance(s, str) for s in scp))
    if scp is not None and not scp_ok:
        raise InvalidTokenError("token_scope_invalid", "Access token scope claim invalid")
