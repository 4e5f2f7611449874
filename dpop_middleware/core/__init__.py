"""The framework-free, I/O-free core: every DPoP rule lives here, once.

Adapters build a :class:`RequestInfo`, the orchestrator (:class:`~dpop_middleware.DPoPVerifier`)
calls these pure functions and the I/O ports, and errors are rendered by :func:`render_error`.
"""

from .binding import DPoPPrincipal, bind_token, parse_scopes, require_scopes
from .challenge import ErrorResponse, render_error
from .config import Mode, VerifierConfig
from .errors import (
    AuthenticationRequired,
    DPoPError,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    ReplayStoreUnavailable,
    ServiceUnavailableError,
    TokenValidationUnavailable,
    UseDPoPNonceError,
)
from .htu import HTUError, htu_matches, normalize_htu
from .keys import ALGORITHMS, DEFAULT_ALGORITHMS, jwk_thumbprint
from .nonce import NonceKeyring, NoncePolicy
from .proof import VerifiedProof, access_token_hash, verify_proof
from .request import Credentials, RequestInfo, authorization_scheme, extract_credentials

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "AuthenticationRequired",
    "Credentials",
    "DPoPError",
    "DPoPPrincipal",
    "ErrorResponse",
    "HTUError",
    "InsufficientScopeError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "Mode",
    "NonceKeyring",
    "NoncePolicy",
    "ReplayStoreUnavailable",
    "RequestInfo",
    "ServiceUnavailableError",
    "TokenValidationUnavailable",
    "UseDPoPNonceError",
    "VerifiedProof",
    "VerifierConfig",
    "access_token_hash",
    "authorization_scheme",
    "bind_token",
    "extract_credentials",
    "htu_matches",
    "jwk_thumbprint",
    "normalize_htu",
    "parse_scopes",
    "render_error",
    "require_scopes",
    "verify_proof",
]
