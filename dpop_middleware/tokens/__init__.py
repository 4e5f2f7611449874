"""Token validators: turn an access token into validated claims for the verifier.

* :class:`JWTAccessTokenValidator`: JWT access tokens (RFC 9068) against a JWKS you give as data.
* :class:`RemoteJWKSValidator`: the same tokens against the JWKS the authorization server
  publishes (``jwks_uri`` or RFC 8414 / OpenID discovery), cached and refreshed single-flight.
* :class:`IntrospectionValidator`: any token (opaque ones included) by RFC 7662 introspection,
  authenticating with a :class:`ClientAuth` strategy.

The remote validators need httpx (``pip install 'dpop-middleware[httpx]'``); it is imported only
when one of them is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .jwt import JWTAccessTokenValidator

if TYPE_CHECKING:
    from .client_auth import ClientAuth, ClientSecretBasic, ClientSecretPost, PrivateKeyJWT
    from .introspection import IntrospectionValidator
    from .remote import RemoteJWKSValidator

__all__ = [
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "IntrospectionValidator",
    "JWTAccessTokenValidator",
    "PrivateKeyJWT",
    "RemoteJWKSValidator",
]

_LAZY = {
    "ClientAuth": ".client_auth",
    "ClientSecretBasic": ".client_auth",
    "ClientSecretPost": ".client_auth",
    "PrivateKeyJWT": ".client_auth",
    "IntrospectionValidator": ".introspection",
    "RemoteJWKSValidator": ".remote",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import dpop_middleware`` never pays for (or requires) the HTTP machinery.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
