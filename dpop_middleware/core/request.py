"""The framework-neutral request and the extraction of its credentials (design.md §2 step 1)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .client_cert import ClientCertificate
from .config import Mode, VerifierConfig
from .errors import AuthenticationRequired, InvalidDPoPProofError, InvalidRequestError, InvalidTokenError
from .redact import redact_headers

__all__ = [
    "Credentials",
    "RequestInfo",
    "authorization_scheme",
    "extract_credentials",
    "is_cors_answer",
    "is_cors_preflight",
]

# RFC 7235 token68, the syntax of both Bearer (RFC 6750 §2.1) and DPoP (RFC 9449 §7.1) tokens:
# 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". Checked with bytes.translate, which
# deletes every allowed character in C: faster than a regex walking the token (docs/performance.md).
_TOKEN68_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def _is_token68(token: str) -> bool:
    if not token.isascii():
        return False
    body = token.encode("ascii").rstrip(b"=")
    return bool(body) and not body.translate(None, _TOKEN68_CHARS)


def is_cors_preflight(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether a request is a CORS preflight: ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``.

    Every adapter lets a preflight through untouched. Browsers never attach credentials (nor a
    proof) to one, so a challenge could only break the real request that follows it; the CORS
    layer, not ours, decides what the preflight may announce.
    """
    if method != "OPTIONS":
        return False
    seen = 0
    for name, _ in headers:
        lowered = name.lower()
        if lowered == "origin":
            seen |= 1
        elif lowered == "access-control-request-method":
            seen |= 2
    return seen == 3


def is_cors_answer(response_headers: Iterable[tuple[str, str]]) -> bool:
    """Whether a response to a preflight came from a CORS layer (it carries ``Access-Control-Allow-Origin``).

    A preflight passes our layer unauthenticated only so that a CORS layer behind it can answer.
    Any other answer (an application view that ignores the method) is replaced by an empty one:
    a request without credentials must never read what a protected route returns.
    """
    return any(name.lower() == "access-control-allow-origin" for name, _ in response_headers)


_QUERY_TOKEN = re.compile(r"(?:^|&)access_token=")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the verifier needs to know of a request.

    ``url`` is the absolute URL as the *client* used it (adapters rebuild it, proxies included);
    ``headers`` keeps repeated fields apart as separate ``(name, value)`` pairs; names are matched
    case-insensitively. ``client_cert``: the client certificate the request presents, as the adapter
    found it (:func:`~dpop_middleware.core.client_cert.presented_certificate`), or ``None``.
    """

    method: str
    url: str
    headers: Sequence[tuple[str, str]]
    client_cert: ClientCertificate | None = None

    def header_values(self, name: str) -> list[str]:
        """All values of header ``name`` (lower-case), in order."""
        return [value for key, value in self.headers if key.lower() == name]

    def __repr__(self) -> str:
        # A request's repr may end up in a trace: the token and the proof must not.
        return f"RequestInfo(method={self.method!r}, url={self.url!r}, headers={redact_headers(self.headers)!r})"


@dataclass(slots=True)  # internal, per request: not frozen, whose init is slower (docs/performance.md)
class Credentials:
    """The token and proof a request presents."""

    scheme: str  # "DPoP" or "Bearer"
    token: str = field(repr=False)  # credentials stay out of reprs (and so out of traces)
    proof: str | None = field(repr=False)


def authorization_scheme(request: RequestInfo) -> str | None:
    """The scheme of the (first) Authorization header, as sent, or ``None`` if there is none.

    Lets an adapter that chains authenticators (DRF) step aside for schemes that are not ours.
    """
    values = request.header_values("authorization")
    if not values:
        return None
    return values[0].strip().partition(" ")[0] or None


def extract_credentials(request: RequestInfo, config: VerifierConfig) -> Credentials | None:
    """Find the one token and the one proof, or raise. ``None``: the request has no credentials."""
    # One pass over the headers: this runs on every request.
    proofs: list[str] = []
    authorizations: list[str] = []
    for name, value in request.headers:
        lowered = name.lower()
        if lowered == "authorization":
            authorizations.append(value)
        elif lowered == "dpop":
            proofs.append(value)
    # WSGI and some proxies merge repeated fields with commas; a JWS never contains one.
    if len(proofs) > 1 or (proofs and "," in proofs[0]):
        raise InvalidRequestError("multiple_dpop_headers", "More than one DPoP proof")
    proof = proofs[0].strip() if proofs else None
    if proof == "":
        proof = None
    url = request.url
    # The substring test first: most URLs have no such parameter, and it is one C call.
    in_query = "access_token=" in url and _QUERY_TOKEN.search(url.partition("?")[2].partition("#")[0]) is not None

    if not authorizations:
        if in_query:
            # We never read tokens from the query string (RFC 9449 §7.1 forbids it for DPoP).
            raise AuthenticationRequired(
                "token_in_query", "Access tokens are accepted only in the Authorization header"
            )
        return None
    # A token68 never contains a comma: a comma-joined value is several fields merged by the server.
    if len(authorizations) > 1 or "," in authorizations[0]:
        raise InvalidRequestError("multiple_authorization_headers", "More than one Authorization header")
    if in_query:
        raise InvalidRequestError("multiple_token_locations", "Access token sent in more than one location")
    scheme_raw, _, token = authorizations[0].strip().partition(" ")
    scheme_key = scheme_raw.lower()
    if scheme_key == "dpop":
        scheme = "DPoP"
    elif scheme_key == "bearer":
        scheme = "Bearer"
        if proof is not None:
            raise InvalidRequestError(
                "bearer_with_dpop_proof", "A DPoP proof must go with the DPoP scheme, not Bearer", scheme="Bearer"
            )
        # A certificate-bound token is sent as Bearer (RFC 8705 §3): with a certificate presented, the
        # token's cnf decides after validation (core.binding); otherwise Bearer is refused here, unread.
        if config.mode is Mode.REQUIRED and not (config.certificate_bound_tokens and request.client_cert is not None):
            raise AuthenticationRequired("bearer_not_accepted", "This resource requires DPoP-bound tokens")
    else:
        raise AuthenticationRequired("unsupported_scheme", "Unsupported authorization scheme")
    token = token.strip()
    if len(token) > config.max_token_bytes:
        raise InvalidTokenError("token_too_large", "Access token too large", scheme=scheme)
    if not _is_token68(token):
        raise InvalidTokenError("token_malformed", "Malformed access token", scheme=scheme)
    if scheme == "DPoP":
        if proof is None:
            raise InvalidDPoPProofError("proof_missing", "DPoP proof missing")
        if len(proof) > config.max_proof_bytes:
            raise InvalidDPoPProofError("proof_too_large", "DPoP proof too large")
    return Credentials(scheme, token, proof)
