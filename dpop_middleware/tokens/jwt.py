"""JWT access tokens (RFC 9068) checked against a JWKS given as data."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core.access_token import (
    DEFAULT_TOKEN_ALGORITHMS,
    JWTPolicy,
    KeySet,
    check_claims,
    parse_access_token,
    verify_access_token,
)
from ..core.errors import InvalidTokenError
from ._jwks_cache import log_skipped

__all__ = ["JWTAccessTokenValidator"]


class JWTAccessTokenValidator:
    """Validate JWT access tokens with keys you already have (a JWKS dict or JSON string).

    Usable as both a :class:`~dpop_middleware.ports.TokenValidator` and an
    :class:`~dpop_middleware.ports.AsyncTokenValidator`: the work is CPU only. For keys fetched from
    the authorization server, use :class:`~dpop_middleware.tokens.remote.RemoteJWKSValidator`.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Iterable[str],
        jwks: Mapping[str, Any] | str,
        algorithms: Iterable[str] = DEFAULT_TOKEN_ALGORITHMS,
        leeway: float = 30.0,
        require_typ: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        self.policy = JWTPolicy(issuer, audiences, tuple(algorithms), leeway, require_typ)
        self.keys = KeySet(json.loads(jwks) if isinstance(jwks, str) else jwks)
        log_skipped(self.keys)
        if not len(self.keys):
            raise ValueError("the JWKS holds no usable signing key")
        self._clock = clock

    def validate(self, token: str) -> Mapping[str, Any]:
        """Return the token's claims, or raise :class:`~dpop_middleware.InvalidTokenError`."""
        parsed = parse_access_token(token, self.policy)
        candidates = self.keys.candidates(parsed.kid, parsed.spec)
        if not candidates:
            raise InvalidTokenError("token_unknown_key", "Access token signed by an unknown key")
        verify_access_token(parsed, candidates)
        check_claims(parsed.jws.payload, self.policy, self._clock())
        return parsed.jws.payload

    async def avalidate(self, token: str) -> Mapping[str, Any]:
        return self.validate(token)
