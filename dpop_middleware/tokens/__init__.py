"""Token validators: JWT access tokens against a JWKS (here), remote JWKS and introspection (their modules)."""

from .jwt import JWTAccessTokenValidator

__all__ = ["JWTAccessTokenValidator"]
