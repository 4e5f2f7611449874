"""How the resource server authenticates itself to the authorization server (RFC 6749 §2.3, RFC 7523).

A :class:`ClientAuth` is a strategy that adds credentials to an outgoing request just before it is
sent. The introspection validator knows nothing about the method used, so a new one (mTLS,
``client_secret_jwt``) is one more small class, not a change to the validator.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import quote_plus

from ._http import HTTPRequest

if TYPE_CHECKING:
    from ..client import DPoPKey

__all__ = ["ClientAuth", "ClientSecretBasic", "ClientSecretPost", "PrivateKeyJWT", "client_auth_for"]

_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@runtime_checkable
class ClientAuth(Protocol):
    """Adds client credentials to ``request``; ``now`` is the validator's clock (for signed assertions)."""

    def apply(self, request: HTTPRequest, now: float) -> HTTPRequest: ...


@dataclass(frozen=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str = field(repr=False)

    def apply(self, request: HTTPRequest, now: float) -> HTTPRequest:
        # RFC 6749 §2.3.1: both parts are application/x-www-form-urlencoded before Base64.
        raw = f"{quote_plus(self.client_id, safe='')}:{quote_plus(self.client_secret, safe='')}"
        return request.with_headers(("Authorization", "Basic " + base64.b64encode(raw.encode()).decode("ascii")))


@dataclass(frozen=True)
class ClientSecretPost:
    """``client_secret_post``: the id and secret as form parameters of the request body."""

    client_id: str
    client_secret: str = field(repr=False)

    def apply(self, request: HTTPRequest, now: float) -> HTTPRequest:
        return request.with_form(("client_id", self.client_id), ("client_secret", self.client_secret))


@dataclass(frozen=True)
class PrivateKeyJWT:
    """``private_key_jwt`` (RFC 7523 §2.2): a short-lived assertion signed with the client's key.

    ``audience`` should be the authorization server's issuer identifier; by default the endpoint
    URL is used, which RFC 7523 also allows.
    """

    client_id: str
    key: DPoPKey = field(repr=False)
    kid: str | None = None
    audience: str | None = None
    lifetime: float = 60.0

    def apply(self, request: HTTPRequest, now: float) -> HTTPRequest:
        header: dict[str, str] = {"alg": self.key.alg, "typ": "JWT"}
        if self.kid is not None:
            header["kid"] = self.kid
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience or request.url,
            "jti": secrets.token_urlsafe(16),
            "iat": int(now),
            "exp": int(now + self.lifetime),
        }
        assertion = self.key.sign(header, claims)
        return request.with_form(
            ("client_id", self.client_id), ("client_assertion_type", _JWT_BEARER), ("client_assertion", assertion)
        )


def client_auth_for(method: str, client_id: str, client_secret: str) -> ClientAuth:
    """The strategy for a secret-based ``token_endpoint_auth_method`` name."""
    if method == "client_secret_basic":
        return ClientSecretBasic(client_id, client_secret)
    if method == "client_secret_post":
        return ClientSecretPost(client_id, client_secret)
    raise ValueError(f"unsupported client authentication method {method!r}; pass client_auth= for others")
