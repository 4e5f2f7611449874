"""JWT access tokens (RFC 9068) checked against the authorization server's published JWKS.

Everything about the token (parsing, signature, claims) is the core's
(:mod:`dpop_middleware.core.access_token`), exactly as for
:class:`~dpop_middleware.tokens.jwt.JWTAccessTokenValidator`; what this module adds is where the keys
come from: fetched over HTTP (optionally found by RFC 8414 / OpenID discovery), cached by
:mod:`._jwks_cache`, refreshed single-flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.access_token import (
    DEFAULT_TOKEN_ALGORITHMS,
    JWTPolicy,
    ParsedAccessToken,
    check_claims,
    parse_access_token,
    verify_access_token,
)
from ..core.errors import TokenValidationUnavailable
from ._discovery import discover_endpoint
from ._http import Flow, HTTPRequest, HTTPSettings, HTTPValidator, check_endpoint_url, run_async, run_sync
from ._jwks_cache import JWKSCache, JWKSCachePolicy, KeyLookup, choose_keys
from ._result_cache import ResultCache, positive_until, token_key

if TYPE_CHECKING:
    import httpx

__all__ = ["RemoteJWKSValidator"]

logger = logging.getLogger("dpop_middleware")

Claims = Mapping[str, Any]
_JWKS_ACCEPT = (("Accept", "application/jwk-set+json, application/json"),)


def _log_failed_refresh(exc: TokenValidationUnavailable) -> None:
    extra = {"dpop_reason": exc.reason}
    logger.warning("dpop JWKS refresh failed (%s); keeping the keys we had", exc.reason, extra=extra)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A token not remembered yet: parsed, with the key cache's answer when it arrived (``now``)."""

    parsed: ParsedAccessToken
    lookup: KeyLookup
    now: float


class RemoteJWKSValidator(HTTPValidator):
    """Validate JWT access tokens with the keys the authorization server publishes.

    Give ``jwks_uri``, or only ``issuer`` to find it by discovery (RFC 8414
    ``/.well-known/oauth-authorization-server``, then ``/.well-known/openid-configuration``).
    Works as both a :class:`~dpop_middleware.ports.TokenValidator` (``validate``, on an
    :class:`httpx.Client`) and an :class:`~dpop_middleware.ports.AsyncTokenValidator`
    (``avalidate``, on an :class:`httpx.AsyncClient`); the two share every decision.

    Raises :class:`~dpop_middleware.InvalidTokenError` for a bad token and
    :class:`~dpop_middleware.TokenValidationUnavailable` (503) when no usable key can be had.

    Key cache (seconds): ``default_ttl`` / ``min_ttl`` / ``max_ttl`` bound the lifetime taken from
    ``Cache-Control: max-age``; ``unknown_kid_interval`` limits refetches for unknown ``kid`` values;
    ``retry_interval`` spaces retries after a failed fetch; ``max_stale`` is how long expired keys
    still serve while the server is down. HTTP: ``timeout`` (each operation, and the whole exchange),
    ``connect_timeout``, ``max_response_bytes``; pass your own ``http_client`` / ``async_http_client``
    for proxies, custom CA bundles or connection pooling. ``cache_size`` / ``cache_max_ttl``: validated
    tokens are remembered by SHA-256 until their ``exp`` (capped), so a reused token costs no signature check.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Iterable[str],
        jwks_uri: str | None = None,
        algorithms: Iterable[str] = DEFAULT_TOKEN_ALGORITHMS,
        leeway: float = 30.0,
        require_typ: bool = True,
        default_ttl: float = 300.0,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        unknown_kid_interval: float = 30.0,
        retry_interval: float = 5.0,
        max_stale: float = 86400.0,
        timeout: float = 5.0,
        connect_timeout: float | None = None,
        max_response_bytes: int = 1 << 20,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        cache_size: int = 10_000,
        cache_max_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        self.policy = JWTPolicy(issuer, audiences, tuple(algorithms), leeway, require_typ)
        self.cache = JWKSCache(
            JWKSCachePolicy(default_ttl, min_ttl, max_ttl, unknown_kid_interval, retry_interval, max_stale)
        )
        self._allow_insecure_http = allow_insecure_http
        # Discovery derives its URLs from the issuer, so the issuer must pass the same transport rule.
        check_endpoint_url(jwks_uri or issuer, allow_insecure_http=allow_insecure_http)
        self.jwks_uri = jwks_uri
        super().__init__(HTTPSettings(timeout, connect_timeout, max_response_bytes), http_client, async_http_client)
        self._results = ResultCache(cache_size, clock)
        self._cache_max_ttl = cache_max_ttl
        self._clock = clock
        # Single flight: threads queue on this lock; asyncio tasks of one loop share one future.
        self._fetch_lock = threading.Lock()
        self._inflight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[None]] = (
            weakref.WeakKeyDictionary()
        )

    # -- the mirrored pair: identical but for how the refresh waits ------------------------------

    def validate(self, token: str) -> Claims:
        """Return the token's claims, or raise (see the class docstring)."""
        step = self._start(token)
        if not isinstance(step, _Pending):
            return step
        if step.lookup.fetch:
            self._refresh(step.lookup.generation)
        return self._finish(token, step)

    async def avalidate(self, token: str) -> Claims:
        """Asyncio twin of :meth:`validate`."""
        step = self._start(token)
        if not isinstance(step, _Pending):
            return step
        if step.lookup.fetch:
            await self._arefresh(step.lookup.generation)
        return self._finish(token, step)

    # -- fetching, single flight -----------------------------------------------------------------

    def _refresh(self, generation: int) -> None:
        with self._fetch_lock:
            if self.cache.generation != generation:
                return  # another thread fetched while we waited for the lock: use its result
            with self._fetching():
                run_sync(self._fetch_flow(), self._sync_http)

    async def _arefresh(self, generation: int) -> None:
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(loop)
        if pending is not None:
            # shield: one waiter being cancelled must not cancel the shared fetch for the others
            await asyncio.shield(pending)
            return
        if self.cache.generation != generation:
            return
        future: asyncio.Future[None] = loop.create_future()
        self._inflight[loop] = future
        try:
            with self._fetching():
                await run_async(self._fetch_flow(), self._async_http)
        finally:
            del self._inflight[loop]
            future.set_result(None)

    @contextlib.contextmanager
    def _fetching(self) -> Iterator[None]:
        """Record the attempt first, and a failure however the fetch ends but in success.

        An outage is logged and swallowed: the lookup that follows decides between stale keys and a 503.
        """
        self.cache.begin_fetch(self._clock())
        ok = False
        try:
            yield
            ok = True
        except TokenValidationUnavailable as exc:
            _log_failed_refresh(exc)
        finally:
            if not ok:
                self.cache.failed()

    def _fetch_flow(self) -> Flow[None]:
        if self.jwks_uri is None:
            found = yield from discover_endpoint(
                self.policy.issuer, "jwks_uri", allow_insecure_http=self._allow_insecure_http
            )
            self.jwks_uri = found
        response = yield HTTPRequest("GET", self.jwks_uri, _JWKS_ACCEPT)
        self.cache.fetched(response, self._clock())

    # -- shared, synchronous steps ---------------------------------------------------------------

    def _start(self, token: str) -> Claims | _Pending:
        """A remembered token's claims, or the parsed token with the key cache's answer for it."""
        now = self._clock()
        hit = self._results.get(token_key(token))
        if hit is not None and hit.claims is not None:
            return hit.claims
        parsed = parse_access_token(token, self.policy)
        return _Pending(parsed, self.cache.lookup(parsed.kid, now), now)

    def _finish(self, token: str, step: _Pending) -> Claims:
        """Verify with the keys the cache holds now (a fetch, if one was due, has happened)."""
        lookup = self.cache.lookup(step.parsed.kid, self._clock()) if step.lookup.fetch else step.lookup
        return self._verified(token, step.parsed, lookup, step.now)

    def _verified(self, token: str, parsed: ParsedAccessToken, lookup: KeyLookup, now: float) -> Claims:
        verify_access_token(parsed, choose_keys(lookup, parsed))
        claims = parsed.jws.payload
        check_claims(claims, self.policy, now)
        self._results.put(token_key(token), claims, positive_until(claims, now, self._cache_max_ttl, 60.0), now)
        return claims
