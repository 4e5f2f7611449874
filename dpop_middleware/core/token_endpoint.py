"""DPoP at the authorization server's token endpoint (RFC 9449 §5, §8, §10), pure.

A token request carries a proof but no access token, so there is no ``ath``; its ``htu`` is the
token endpoint. The proof itself is checked by :func:`~dpop_middleware.core.proof.verify_proof`
(``token_hash=None``), the same function the resource server uses: this module only adds what
differs at a token endpoint:

* finding the one ``DPoP`` header (several, or a comma-joined one, make the proof invalid: §4.3 step 1);
* the ``dpop_jkt`` check of §10: a code whose authorization request named a key thumbprint may only
  be redeemed with a proof signed by that key;
* rendering errors the RFC 6749 §5.2 way: HTTP 400 with a JSON body (``invalid_dpop_proof``,
  ``use_dpop_nonce`` plus one ``DPoP-Nonce`` header), never a ``WWW-Authenticate`` challenge.

The replay store is written by the orchestrator (:mod:`dpop_middleware.authorization_server`), last.
"""

from __future__ import annotations

import hmac
import json
import re

from .challenge import ErrorResponse
from .config import VerifierConfig
from .errors import (
    DPoPError,
    InvalidDPoPProofError,
    InvalidRequestError,
    ServiceUnavailableError,
    UseDPoPNonceError,
)
from .nonce import nonce_headers
from .proof import VerifiedProof, verify_proof
from .request import RequestInfo

__all__ = [
    "InvalidGrantError",
    "check_dpop_jkt",
    "check_token_request",
    "render_token_error",
    "token_request_proof",
    "validate_dpop_jkt",
]

Header = tuple[str, str]

# An RFC 7638 thumbprint with SHA-256 is 32 bytes: 43 base64url characters without padding.
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


class InvalidGrantError(DPoPError):
    """400 ``invalid_grant`` (RFC 6749 §5.2): the grant is bound to another DPoP key (RFC 9449 §10)."""

    status = 400
    error = "invalid_grant"
    default_reason = "dpop_jkt_mismatch"
    default_description = "DPoP proof key does not match the key bound to the authorization grant"


def validate_dpop_jkt(value: object) -> str:
    """Check a ``dpop_jkt`` authorization request parameter (§10) and return it.

    Call it at the authorization endpoint (or the PAR endpoint) before storing the value with the
    code; a malformed value is the client's ``invalid_request``.
    """
    if not isinstance(value, str) or _JKT.fullmatch(value) is None:
        raise InvalidRequestError("dpop_jkt_malformed", "Malformed dpop_jkt parameter")
    return value


def check_dpop_jkt(expected: str | None, jkt: str) -> None:
    """§10: the proof key at the token endpoint must be the one named by ``dpop_jkt`` (if one was)."""
    if expected is None:
        return
    # Constant time: the expected thumbprint comes from our own storage, the other from the request.
    if not hmac.compare_digest(expected.encode("ascii", "replace"), jkt.encode("ascii")):
        raise InvalidGrantError()


def token_request_proof(request: RequestInfo) -> str | None:
    """The request's one ``DPoP`` proof, or ``None`` if it has none.

    At a token endpoint every defect of the header is a defect of the proof (§4.3 step 1), hence
    ``invalid_dpop_proof`` rather than the resource server's ``invalid_request``.
    """
    proofs = [value.strip() for value in request.header_values("dpop")]
    # WSGI and some proxies merge repeated fields with commas; a JWS never contains one.
    if len(proofs) > 1 or (proofs and "," in proofs[0]):
        raise InvalidDPoPProofError("multiple_dpop_headers", "More than one DPoP proof")
    return proofs[0] if proofs and proofs[0] else None


def check_token_request(
    request: RequestInfo,
    *,
    config: VerifierConfig,
    now: float,
    endpoint_url: str | None = None,
    dpop_jkt: str | None = None,
    required: bool = True,
) -> VerifiedProof | None:
    """Every pure check of a token request's proof; the replay check is left to the caller.

    ``endpoint_url`` is the token endpoint's public URL: when given, ``htu`` is compared with it
    instead of the URL rebuilt from the request (robust behind proxies). ``dpop_jkt`` is the value
    the authorization request bound the grant to, if any; such a grant cannot be redeemed without a
    proof. Returns ``None`` only for a request without a proof when ``required`` is false (the
    authorization server may then issue a Bearer token).
    """
    proof = token_request_proof(request)
    if proof is None:
        if required or dpop_jkt is not None:
            raise InvalidDPoPProofError("proof_missing", "DPoP proof missing")
        return None
    verified = verify_proof(
        proof,
        method=request.method,
        url=endpoint_url or request.url,
        token_hash=None,
        now=now,
        config=config,
    )
    check_dpop_jkt(dpop_jkt, verified.key.jkt)
    return verified


def render_token_error(error: DPoPError) -> ErrorResponse:
    """Render ``error`` as a token endpoint error response (RFC 6749 §5.2, RFC 9449 §5 and §8).

    Client errors are HTTP 400 with ``{"error": ..., "error_description": ...}``; ``use_dpop_nonce``
    also carries one ``DPoP-Nonce`` header. An outage of our own (replay store) is a 503 with
    ``Retry-After``. Every response is ``Cache-Control: no-store``.
    """
    headers: list[Header] = []
    description = error.description
    if isinstance(error, ServiceUnavailableError):
        status = error.status
        code = "temporarily_unavailable"  # RFC 6749 §4.1.2.1's code for a server that cannot answer now
        headers.append(("Retry-After", str(error.retry_after)))
    else:
        status = 400
        code = error.error or "invalid_request"
        if isinstance(error, UseDPoPNonceError):
            headers.extend(nonce_headers(error.nonce))
            description = "Authorization server requires nonce in DPoP proof"  # RFC 9449 §8's wording
    headers.append(("Cache-Control", "no-store"))
    body = {"error": code, "error_description": description}
    return ErrorResponse(status, tuple(headers), json.dumps(body, separators=(",", ":")).encode(), error)
