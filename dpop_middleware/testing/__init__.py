"""Test helpers for users of dpop-middleware (and for our own tests).

:class:`TestIssuer` plays the authorization server: it holds a signing key, publishes a JWKS and
mints RFC 9068 access tokens bound to a client key. :func:`dpop_headers` builds the two request
headers for a protected call. The pytest plugin (``dpop_middleware.testing.plugin``) wraps these in
fixtures.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..client import DPoPKey
from ..tokens.jwt import JWTAccessTokenValidator

__all__ = ["TestIssuer", "dpop_headers"]


class TestIssuer:
    """An in-process authorization server for tests: JWKS plus bound JWT access tokens."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        issuer: str = "https://issuer.test",
        audience: str = "https://api.test",
        *,
        alg: str = "ES256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        self.signing_key = DPoPKey.generate(alg)
        self.kid = self.signing_key.jkt[:12]

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = dict(self.signing_key.public_jwk, kid=self.kid, use="sig", alg=self.signing_key.alg)
        return {"keys": [jwk]}

    def token(
        self,
        jkt: str | None,
        *,
        scope: str | Iterable[str] = "read",
        subject: str = "alice",
        client_id: str = "test-client",
        lifetime: float = 300,
        typ: str = "at+jwt",
        **claims: Any,
    ) -> str:
        """A signed access token bound to ``jkt`` (``None``: an unbound Bearer token)."""
        now = int(self.clock())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "client_id": client_id,
            "iat": now,
            "exp": int(now + lifetime),
            "jti": secrets.token_urlsafe(12),
            "scope": scope if isinstance(scope, str) else " ".join(scope),
        }
        if jkt is not None:
            body["cnf"] = {"jkt": jkt}
        body.update(claims)
        header = {"alg": self.signing_key.alg, "typ": typ, "kid": self.kid}
        return self.signing_key.sign(header, body)

    def validator(self, **options: Any) -> JWTAccessTokenValidator:
        """A validator that trusts this issuer's JWKS."""
        options.setdefault("clock", self.clock)
        return JWTAccessTokenValidator(issuer=self.issuer, audience=self.audience, jwks=self.jwks, **options)


def dpop_headers(
    key: DPoPKey, method: str, url: str, token: str, *, nonce: str | None = None, **proof_options: Any
) -> dict[str, str]:
    """``Authorization`` and ``DPoP`` headers for one request to ``method url``."""
    proof = key.proof(method, url, access_token=token, nonce=nonce, **proof_options)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}
