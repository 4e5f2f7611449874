"""The one exception hierarchy of dpop-middleware.

Every rejection the library makes is one of these. Each class knows its HTTP status and its
RFC 6750 / RFC 9449 error code; an instance carries a stable, machine-readable ``reason`` (for logs
and metrics), a short human ``description`` that is safe to send to the client (it never echoes
attacker input, tokens, proofs or keys) and ``diagnostics`` meant for logs only::

    DPoPError                      (base: never raised itself)
    ├── InvalidRequestError        400  invalid_request      malformed request (two DPoP headers, Bearer+DPoP)
    ├── AuthenticationRequired     401  (no error code)      no credentials, or a scheme we do not accept
    ├── InvalidDPoPProofError      401  invalid_dpop_proof   the DPoP proof is bad
    ├── InvalidTokenError          401  invalid_token        token bad, expired, unbound or bound to another key
    ├── UseDPoPNonceError          401  use_dpop_nonce       a (fresh) server nonce is required; carries it
    ├── InsufficientScopeError     403  insufficient_scope   the token lacks a scope the route needs
    ├── InsufficientUserAuthenticationError  401  insufficient_user_authentication  step-up (RFC 9470)
    └── ServiceUnavailableError    503  (no challenge)       our own infrastructure failed: never accept
        ├── ReplayStoreUnavailable      replay store down, slow or full
        └── TokenValidationUnavailable  JWKS / introspection endpoint unreachable

Rendering the challenge is done once, in :mod:`dpop_middleware.core.challenge`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AuthenticationRequired",
    "DPoPError",
    "InsufficientScopeError",
    "InsufficientUserAuthenticationError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "ReplayStoreUnavailable",
    "ServiceUnavailableError",
    "TokenValidationUnavailable",
    "UseDPoPNonceError",
]


class DPoPError(Exception):
    """Base class: a request that must not be accepted.

    ``scheme`` names the authentication scheme whose challenge carries the error (``"DPoP"`` or
    ``"Bearer"``), so that a server accepting both reports the error under the scheme the client used.
    """

    status: ClassVar[int] = 401
    error: ClassVar[str | None] = None
    #: Defaults to the error code in subclasses that have one and name no reason of their own.
    default_reason: ClassVar[str] = "rejected"
    default_description: ClassVar[str] = "Request rejected"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "default_reason" not in vars(cls) and "error" in vars(cls) and cls.error is not None:
            cls.default_reason = cls.error

    def __init__(
        self,
        reason: str | None = None,
        description: str | None = None,
        *,
        scheme: str = "DPoP",
        diagnostics: Mapping[str, Any] | None = None,
    ) -> None:
        self.reason = reason or self.default_reason
        self.description = description or self.default_description
        self.scheme = scheme
        self.diagnostics: Mapping[str, Any] = diagnostics or {}
        super().__init__(f"{self.reason}: {self.description}")


class InvalidRequestError(DPoPError):
    """400: the request is malformed (RFC 6750 ``invalid_request``)."""

    status = 400
    error = "invalid_request"
    default_description = "Malformed authorization request"


class AuthenticationRequired(DPoPError):
    """401 without an error code: the client sent no credentials we accept (RFC 6750 §3.1)."""

    status = 401
    error = None
    default_reason = "missing_credentials"
    default_description = "Authentication required"


class InvalidDPoPProofError(DPoPError):
    """401 ``invalid_dpop_proof`` (RFC 9449 §7.1)."""

    status = 401
    error = "invalid_dpop_proof"
    default_description = "Invalid DPoP proof"


class InvalidTokenError(DPoPError):
    """401 ``invalid_token`` (RFC 6750 §3.1, RFC 9449 §7.1)."""

    status = 401
    error = "invalid_token"
    default_description = "Invalid access token"


class UseDPoPNonceError(DPoPError):
    """401 ``use_dpop_nonce`` (RFC 9449 §9): retry with the nonce in ``self.nonce``."""

    status = 401
    error = "use_dpop_nonce"
    default_reason = "nonce_required"
    default_description = "Resource server requires nonce in DPoP proof"

    def __init__(self, nonce: str, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(reason, **kwargs)
        self.nonce = nonce


class InsufficientScopeError(DPoPError):
    """403 ``insufficient_scope`` (RFC 6750 §3.1); ``self.scopes`` lists what the route needs."""

    status = 403
    error = "insufficient_scope"
    default_description = "The access token does not grant the required scope"

    def __init__(self, scopes: tuple[str, ...], reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(reason, **kwargs)
        self.scopes = scopes


class InsufficientUserAuthenticationError(DPoPError):
    """401 ``insufficient_user_authentication`` (RFC 9470 §3): the user must authenticate again,
    with one of ``acr_values`` and/or no longer ago than ``max_age`` seconds (both go on the challenge)."""

    status = 401
    error = "insufficient_user_authentication"
    default_description = "A different authentication level is required"

    def __init__(
        self, acr_values: tuple[str, ...] = (), max_age: int | None = None, reason: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(reason, **kwargs)
        self.acr_values = acr_values
        self.max_age = max_age


class ServiceUnavailableError(DPoPError):
    """503: our own infrastructure failed. The request is refused, never accepted."""

    status = 503
    error = None
    default_reason = "service_unavailable"
    default_description = "Authentication service temporarily unavailable"
    retry_after: ClassVar[int] = 5


class ReplayStoreUnavailable(ServiceUnavailableError):
    """503: the replay store is unreachable, too slow, or full."""

    default_reason = "replay_store_unavailable"


class TokenValidationUnavailable(ServiceUnavailableError):
    """503: the token could not be validated for want of keys or of the introspection endpoint."""

    default_reason = "token_validation_unavailable"
