"""Token binding (RFC 9449 §6, §7.1; RFC 8705 §3) and the identity it yields, pure.

The token's ``cnf`` decides what the request must prove, never the request:

=====================  ===========================================  ==============================
``cnf`` holds           ``DPoP`` scheme (with a proof)               ``Bearer`` scheme
=====================  ===========================================  ==============================
nothing                 refused (``token_not_bound``)                accepted when the mode allows
``jkt``                 the proof's key                              refused (``bound_token_as_bearer``)
``x5t#S256``            refused (``token_not_bound``)                the client certificate
both                    the proof's key **and** the certificate      refused (``bound_token_as_bearer``)
=====================  ===========================================  ==============================

``x5t#S256`` counts only with ``certificate_bound_tokens`` on; otherwise such a token is refused
(``cert_binding_not_enabled``), whatever else it carries: a binding we do not check is never ignored.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .client_cert import ClientCertificate, thumbprints_match
from .errors import AuthenticationRequired, InsufficientScopeError, InvalidTokenError
from .frozen import positional_constructor
from .proof import VerifiedProof

__all__ = ["DPoPPrincipal", "TokenFacts", "bind_token", "parse_scopes", "require_scopes", "token_facts"]


@dataclass(frozen=True, slots=True)
class DPoPPrincipal:
    """The authenticated identity of a request, as adapters attach it (``request.dpop`` and kin).

    ``jkt`` and ``jwk`` are the proof key's RFC 7638 thumbprint and public JWK (``None`` for a
    request admitted with an unbound Bearer token in ``allow_bearer`` mode). ``next_nonce`` is a
    fresh server nonce that the adapter sends back in ``DPoP-Nonce``.
    """

    scheme: str
    claims: Mapping[str, Any]
    jkt: str | None = None
    jwk: Mapping[str, str] | None = None
    subject: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    jti: str | None = None
    iat: float | None = None
    htm: str | None = None
    htu: str | None = None
    next_nonce: str | None = field(default=None, repr=False)
    #: The client certificate's ``x5t#S256`` when the token is certificate-bound (RFC 8705 §3).
    x5t_s256: str | None = None

    @property
    def is_dpop_bound(self) -> bool:
        """True when the request proved possession of the key the token is bound to."""
        return self.jkt is not None

    @property
    def is_certificate_bound(self) -> bool:
        """True when the request presented the client certificate the token is bound to."""
        return self.x5t_s256 is not None

    def has_scopes(self, scopes: Iterable[str]) -> bool:
        return self.scopes.issuperset(scopes)


#: ``DPoPPrincipal(...)`` with every field, positionally: the hot path's (:mod:`.frozen`).
_new_principal = positional_constructor(DPoPPrincipal)


def parse_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` (space-separated, RFC 9068 §2.2.3) or ``scp`` (a list, or a string)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        return frozenset(scp.split())
    if isinstance(scp, list):
        return frozenset(s for s in scp if isinstance(s, str))
    return frozenset()


def _text(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            return value
    return None


@dataclass(slots=True)
class TokenFacts:
    """What binding needs from a token's claims, derived once per token (the verifier caches it)."""

    claims: Mapping[str, Any]
    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    cnf_present: bool
    cnf_malformed: bool
    jkt: str | None
    x5t_s256: str | None = None


def _has_lone_surrogate(claims: Mapping[str, Any]) -> bool:
    """Whether any string in ``claims`` (member names and nested values included) is not Unicode text.

    Claims parsed by :func:`~dpop_middleware.core.jose.parse_json_object` never are; this catches
    those of validators that parse JSON themselves (introspection, any callable).
    """
    stack: list[Any] = [claims]
    seen: set[int] = set()  # a callable's claims could be self-referencing
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(value, (dict, list, tuple, Mapping)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, (dict, Mapping)):
                stack.extend(value.keys())
                stack.extend(value.values())
            else:
                stack.extend(value)
    return False


def token_facts(claims: Mapping[str, Any]) -> TokenFacts:
    """What binding needs from a validated token's claims; raise if they hold text that is not Unicode.

    Run once per token (the verifier caches the result), so the full walk costs nothing per request.
    """
    if _has_lone_surrogate(claims):
        # Not text: accepting it would hand every app that renders the claims a UnicodeEncodeError.
        raise InvalidTokenError("token_invalid_text", "Access token claims are not valid text")
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
    x5t = cnf.get("x5t#S256") if isinstance(cnf, Mapping) else None
    return TokenFacts(
        claims=claims,
        subject=_text(claims, "sub"),
        client_id=_text(claims, "client_id", "azp"),
        scopes=parse_scopes(claims),
        cnf_present=cnf is not None,
        # A member of the wrong type is a malformed binding, never "no binding".
        cnf_malformed=(cnf is not None and not isinstance(cnf, Mapping))
        or (jkt is not None and not isinstance(jkt, str))
        or (x5t is not None and not isinstance(x5t, str)),
        jkt=jkt if isinstance(jkt, str) else None,
        x5t_s256=x5t if isinstance(x5t, str) else None,
    )


def _certificate_thumbprint(facts: TokenFacts, cert: ClientCertificate | None, scheme: str) -> str:
    """The presented certificate's thumbprint, when it is the one ``cnf.x5t#S256`` names (RFC 8705 §3)."""
    assert facts.x5t_s256 is not None
    if cert is None:
        raise InvalidTokenError("client_cert_missing", "Certificate-bound token without its certificate", scheme=scheme)
    try:
        presented = cert.thumbprint()
    except InvalidTokenError as exc:
        exc.scheme = scheme
        raise
    if not thumbprints_match(facts.x5t_s256, presented):
        raise InvalidTokenError("client_cert_mismatch", "Invalid certificate binding", scheme=scheme)
    return presented


def bind_token(
    scheme: str,
    facts: TokenFacts,
    proof: VerifiedProof | None,
    cert: ClientCertificate | None = None,
    *,
    certificate_bound_tokens: bool = False,
    bearer_allowed: bool = True,
) -> DPoPPrincipal:
    """Check that the token's binding fits how it was presented (the table above); build the principal.

    ``cert``: the client certificate the request presents; ``certificate_bound_tokens``: whether
    ``cnf.x5t#S256`` is accepted at all; ``bearer_allowed``: whether the mode admits unbound Bearer tokens.
    """
    if facts.cnf_malformed:
        raise InvalidTokenError("cnf_malformed", "Malformed token confirmation claim", scheme=scheme)
    if facts.x5t_s256 is not None and not certificate_bound_tokens:
        raise InvalidTokenError(
            "cert_binding_not_enabled", "Certificate-bound tokens are not accepted here", scheme=scheme
        )
    if scheme == "Bearer" or proof is None:
        if facts.cnf_present:
            if facts.jkt is not None or facts.x5t_s256 is None:
                raise InvalidTokenError(
                    "bound_token_as_bearer", "Sender-constrained token presented as Bearer", scheme=scheme
                )
            return DPoPPrincipal(
                scheme=scheme, claims=facts.claims, subject=facts.subject, client_id=facts.client_id,
                scopes=facts.scopes, x5t_s256=_certificate_thumbprint(facts, cert, scheme),
            )  # fmt: skip
        if not bearer_allowed:
            # Let through only because a certificate was presented (core.request): unbound stays refused.
            raise AuthenticationRequired("bearer_not_accepted", "This resource requires DPoP-bound tokens")
        return DPoPPrincipal(
            scheme=scheme,
            claims=facts.claims,
            subject=facts.subject,
            client_id=facts.client_id,
            scopes=facts.scopes,
        )
    if facts.jkt is None:
        raise InvalidTokenError("token_not_bound", "Access token is not DPoP-bound")
    key = proof.key
    # compare_digest takes ASCII str as is; a non-ASCII cnf.jkt cannot be a thumbprint anyway.
    if not (facts.jkt.isascii() and hmac.compare_digest(facts.jkt, key.jkt)):
        raise InvalidTokenError("key_binding_mismatch", "Invalid DPoP key binding")
    # Both bindings: both must hold.
    bound_cert = _certificate_thumbprint(facts, cert, scheme) if facts.x5t_s256 is not None else None
    return _new_principal(  # every field, in field order
        scheme, facts.claims, key.jkt, key.public_jwk, facts.subject, facts.client_id, facts.scopes,
        proof.jti, proof.iat, proof.htm, proof.htu, proof.next_nonce, bound_cert,
    )  # fmt: skip


def require_scopes(principal: DPoPPrincipal | None, scopes: Iterable[str]) -> None:
    """Raise :class:`InsufficientScopeError` unless ``principal`` holds every scope in ``scopes``."""
    needed = tuple(scopes)
    if principal is None or not principal.has_scopes(needed):
        raise InsufficientScopeError(needed, scheme=principal.scheme if principal else "DPoP")
