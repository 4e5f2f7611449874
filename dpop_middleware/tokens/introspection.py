"""Opaque (or any) access tokens checked by RFC 7662 token introspection.

The request is built and the answer read by pure code shared by :meth:`IntrospectionValidator.validate`
(on :class:`httpx.Client`) and :meth:`IntrospectionValidator.avalidate` (on :class:`httpx.AsyncClient`).
How an answer maps to an outcome:

====================================================  =====================================
answer                                                outcome
====================================================  =====================================
transport error, timeout, non-200, not a JSON         503 ``TokenValidationUnavailable``,
object, ``active`` missing or not a boolean           never cached
``active: false``                                     401 ``invalid_token``, cached briefly
``active: true`` failing a claim check (``exp``,      401 ``invalid_token``, cached briefly
``nbf``, ``iss``, ``aud``, ``cnf``, ``token_type``)
``active: true``                                      the response as claims, cached until ``exp``
====================================================  =====================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidTokenError, TokenValidationUnavailable
from ..core.jose import numeric_date
from ._discovery import discover_endpoint, json_object
from ._http import (
    Flow,
    HTTPRequest,
    HTTPResponse,
    HTTPSettings,
    HTTPValidator,
    check_endpoint_url,
    run_async,
    run_sync,
)
from ._result_cache import ResultCache, positive_until, token_key
from .client_auth import ClientAuth, client_auth_for

if TYPE_CHECKING:
    import httpx

__all__ = ["IntrospectionPolicy", "IntrospectionValidator", "check_introspected", "read_introspection"]

Claims = Mapping[str, Any]
_ACCEPT = (("Accept", "application/json"),)


@dataclass(frozen=True)
class IntrospectionPolicy:
    """What an active introspection answer must satisfy.

    ``issuer`` (if set) must equal ``iss`` when the server sends one; ``audiences`` (if set) must
    meet ``aud``, which is then required. ``leeway`` applies to ``exp``, ``nbf`` and ``iat``.
    """

    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    leeway: float = 30.0
    max_token_bytes: int = 16384


def _bad(reason: str) -> InvalidTokenError:
    return InvalidTokenError(reason, "Access token not accepted by the authorization server")


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    if claims.get(name) is None:
        return None
    value = numeric_date(claims[name])
    if value is None:
        raise _bad(f"token_{name}_invalid")
    return value


def check_introspected(claims: Mapping[str, Any], policy: IntrospectionPolicy, now: float) -> None:
    """Claim checks on an ``active: true`` answer; raise :class:`InvalidTokenError` on failure.

    The authorization server vouches for the token, but we still refuse an answer that is
    expired by our clock, meant for another audience, or claims DPoP without a key binding.
    """
    exp = _time(claims, "exp")
    if exp is not None and now >= exp + policy.leeway:
        raise _bad("token_expired")
    nbf = _time(claims, "nbf")
    if nbf is not None and now + policy.leeway < nbf:
        raise _bad("token_not_yet_valid")
    iat = _time(claims, "iat")
    if iat is not None and now + policy.leeway < iat:
        raise _bad("token_iat_in_future")
    if policy.issuer is not None and "iss" in claims and claims["iss"] != policy.issuer:
        raise _bad("token_wrong_issuer")
    if policy.audiences:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(a, str) and a in policy.audiences for a in audiences):
            raise _bad("token_wrong_audience")
    cnf = claims.get("cnf")
    if cnf is not None and not isinstance(cnf, Mapping):
        raise InvalidTokenError("cnf_malformed", "Malformed token confirmation claim")
    token_type = claims.get("token_type")
    if token_type is not None and not isinstance(token_type, str):
        raise _bad("token_type_invalid")
    # RFC 9449 §6.2: a DPoP token's introspection answer carries cnf.jkt; without it the token
    # could not be bound to anything, so it must not pass as DPoP.
    if isinstance(token_type, str) and token_type.lower() == "dpop" and not isinstance((cnf or {}).get("jkt"), str):
        raise InvalidTokenError("token_not_bound", "Access token is not DPoP-bound")
    for name in ("scope", "client_id", "sub", "username"):
        if name in claims and not isinstance(claims[name], str):
            raise _bad(f"token_{name}_invalid")


def read_introspection(response: HTTPResponse, policy: IntrospectionPolicy, now: float) -> dict[str, Any] | None:
    """The claims of an active token, ``None`` for an inactive one; 503 for an unusable answer."""
    body = json_object(response, "introspection_failed")
    active = body.get("active")
    if not isinstance(active, bool):
        raise TokenValidationUnavailable("introspection_malformed", diagnostics={"error": "no boolean 'active'"})
    if not active:
        return None
    check_introspected(body, policy, now)
    return body


class IntrospectionValidator(HTTPValidator):
    """Validate access tokens by asking the authorization server (RFC 7662).

    Give ``endpoint``, or ``issuer`` alone to find ``introspection_endpoint`` by discovery.
    Authenticate with ``client_id`` + ``client_secret`` (``auth_method`` ``client_secret_basic`` or
    ``client_secret_post``) or any :class:`~dpop_middleware.tokens.client_auth.ClientAuth` as
    ``client_auth`` (e.g. :class:`~dpop_middleware.tokens.client_auth.PrivateKeyJWT`).
    ``audience`` (one or several) is required: an active token's ``aud`` must name it. Only
    ``verify_audience=False`` accepts tokens for any audience (an API the AS issues no other tokens for).

    Answers are cached by SHA-256 of the token: active ones until their ``exp`` (at most
    ``cache_max_ttl``; ``default_ttl`` when there is no ``exp``), inactive or rejected ones for
    ``negative_ttl``. Failures are never cached. A revoked token may thus be accepted for up to
    ``cache_max_ttl`` seconds: lower it if revocation must bite sooner (``cache_size=0`` disables).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        issuer: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        auth_method: str = "client_secret_basic",
        client_auth: ClientAuth | None = None,
        audience: str | Iterable[str] | None = None,
        verify_audience: bool = True,
        leeway: float = 30.0,
        cache_size: int = 10_000,
        cache_max_ttl: float = 300.0,
        default_ttl: float = 60.0,
        negative_ttl: float = 10.0,
        timeout: float = 5.0,
        connect_timeout: float | None = None,
        max_response_bytes: int = 1 << 20,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if endpoint is None and issuer is None:
            raise ValueError("give the introspection endpoint, or the issuer to discover it")
        if client_auth is None:
            if client_id is None or client_secret is None:
                raise ValueError("client_id and client_secret (or client_auth=) are required")
            client_auth = client_auth_for(auth_method, client_id, client_secret)
        if min(cache_max_ttl, default_ttl, negative_ttl) < 0:
            raise ValueError("cache times must not be negative")
        check_endpoint_url(endpoint or issuer or "", allow_insecure_http=allow_insecure_http)
        audiences = (audience,) if isinstance(audience, str) else tuple(audience or ())
        # The authorization server answers "active" for a token meant for any of its APIs: without
        # an audience check, a token issued for another API would pass here. Opting out is explicit.
        if verify_audience and not audiences:
            raise TypeError(
                "IntrospectionValidator needs audience= (this API's identifier, as the authorization server "
                "puts it in 'aud'), or verify_audience=False to accept active tokens for any audience"
            )
        if not verify_audience and audiences:
            raise ValueError("give audience= or verify_audience=False, not both")
        self.policy = IntrospectionPolicy(issuer, audiences, leeway)
        self.endpoint = endpoint
        self.client_auth = client_auth
        self._allow_insecure_http = allow_insecure_http
        super().__init__(HTTPSettings(timeout, connect_timeout, max_response_bytes), http_client, async_http_client)
        self._results = ResultCache(cache_size, clock)
        self._cache_max_ttl = cache_max_ttl
        #: Read by DPoPVerifier: its own token cache must not outlive ours (revocation must bite).
        self.result_cache_max_ttl = cache_max_ttl if cache_size > 0 else 0.0
        self._default_ttl = default_ttl
        self._negative_ttl = negative_ttl
        self._clock = clock

    # -- the mirrored pair: identical but for how the request is sent ----------------------------

    def validate(self, token: str) -> Claims:
        """Return the active token's claims, or raise (see the module docstring)."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        response = run_sync(self._flow(token), self._sync_http)
        return self._decided(token, response)

    async def avalidate(self, token: str) -> Claims:
        """Asyncio twin of :meth:`validate`."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        response = await run_async(self._flow(token), self._async_http)
        return self._decided(token, response)

    # -- shared, synchronous steps ---------------------------------------------------------------

    def _cached(self, token: str) -> Claims | None:
        if len(token) > self.policy.max_token_bytes:
            # Not worth a round trip, and not worth sending megabytes to the authorization server.
            raise InvalidTokenError("token_too_large", "Access token too large")
        hit = self._results.get(token_key(token))
        return hit.raise_if_refused() if hit is not None else None

    def _flow(self, token: str) -> Flow[HTTPResponse]:
        endpoint = self.endpoint
        if endpoint is None:  # __init__ made sure we then have an issuer
            endpoint = yield from discover_endpoint(
                self.policy.issuer or "", "introspection_endpoint", allow_insecure_http=self._allow_insecure_http
            )
            self.endpoint = endpoint
        request = HTTPRequest("POST", endpoint, _ACCEPT, (("token", token), ("token_type_hint", "access_token")))
        response = yield self.client_auth.apply(request, self._clock())
        return response

    def _decided(self, token: str, response: HTTPResponse) -> Claims:
        now = self._clock()
        key = token_key(token)
        try:
            claims = read_introspection(response, self.policy, now)
            if claims is None:
                raise _bad("token_inactive")
        except InvalidTokenError as exc:
            # A negative answer, cached briefly; an outage (TokenValidationUnavailable) never is.
            self._results.put_refused(key, exc, now + self._negative_ttl, now)
            raise
        until = positive_until(claims, now, self._cache_max_ttl, self._default_ttl)
        self._results.put(key, claims, until, now)
        return claims
