"""dpop-middleware: RFC 9449 DPoP for Python resource servers.

Build one :class:`DPoPVerifier` and hand it to your framework's adapter
(``dpop_middleware.django``, ``.flask``, ``.starlette``, ``.fastapi``, ``.wsgi``).
"""

from .authorization_server import TokenEndpointVerifier
from .core import (
    AuthenticationRequired,
    DPoPError,
    DPoPPrincipal,
    ErrorResponse,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    Mode,
    NonceKeyring,
    NoncePolicy,
    ReplayStoreUnavailable,
    RequestInfo,
    ServiceUnavailableError,
    TokenValidationUnavailable,
    UseDPoPNonceError,
    VerifierConfig,
    jwk_thumbprint,
    normalize_htu,
)
from .ports import AsyncReplayStore, AsyncTokenValidator, ReplayStore, TokenValidator
from .stores.memory import MemoryReplayStore
from .tokens.jwt import JWTAccessTokenValidator
from .verifier import AuthResult, DPoPVerifier, Outcome

# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

__all__ = [
    "AsyncReplayStore",
    "AsyncTokenValidator",
    "AuthResult",
    "AuthenticationRequired",
    "DPoPError",
    "DPoPPrincipal",
    "DPoPVerifier",
    "ErrorResponse",
    "InsufficientScopeError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "JWTAccessTokenValidator",
    "MemoryReplayStore",
    "Mode",
    "NonceKeyring",
    "NoncePolicy",
    "Outcome",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "RequestInfo",
    "ServiceUnavailableError",
    "TokenEndpointVerifier",
    "TokenValidationUnavailable",
    "TokenValidator",
    "UseDPoPNonceError",
    "VerifierConfig",
    "__version__",
    "jwk_thumbprint",
    "normalize_htu",
]


def __getattr__(name: str) -> object:
    # Validators that need httpx, importable from the top level without making httpx a dependency.
    if name in ("RemoteJWKSValidator", "IntrospectionValidator"):
        from . import tokens

        return getattr(tokens, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
