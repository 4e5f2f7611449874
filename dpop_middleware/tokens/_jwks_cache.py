"""The JWKS cache's decisions, pure: when to fetch, which keys to trust, what an answer means.

The remote validator asks :meth:`JWKSCache.lookup` before verifying a token. The answer says which
keys to use and whether a fetch should happen first. The sync and async validators differ only in
how they perform that fetch (and how they keep it single-flight); everything else is decided here.

Rules (design.md §7, pitfalls: unlimited refetch on unknown ``kid``, a failed fetch that empties the cache):

* Keys live ``max-age`` from ``Cache-Control`` (minus ``Age``), clamped to ``[min_ttl, max_ttl]``;
  ``default_ttl`` when the server says nothing.
* An unknown ``kid`` triggers a fetch at most once per ``unknown_kid_interval``: a flood of tokens
  with invented ``kid`` values costs the authorization server one request per interval.
* A failed fetch keeps the keys we had. After a failure we retry no sooner than ``retry_interval``;
  expired keys remain usable for ``max_stale`` more seconds while the server is down.
* No usable keys (never fetched, or stale too long), or an unknown ``kid`` while the server is
  failing: 503. Our outage is never reported as a bad token, and never accepted.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.access_token import KeySet, ParsedAccessToken
from ..core.errors import InvalidTokenError, TokenValidationUnavailable
from ..core.keys import PublicKey
from ._http import HTTPResponse

__all__ = ["JWKSCache", "JWKSCachePolicy", "KeyLookup", "cache_ttl", "choose_keys", "log_skipped", "parse_jwks"]

logger = logging.getLogger("dpop_middleware")


@dataclass(frozen=True)
class JWKSCachePolicy:
    """Times (seconds) governing the JWKS cache; see the module docstring for their meaning."""

    default_ttl: float = 300.0
    min_ttl: float = 60.0
    max_ttl: float = 86400.0
    unknown_kid_interval: float = 30.0
    retry_interval: float = 5.0
    max_stale: float = 86400.0

    def __post_init__(self) -> None:
        if min(self.default_ttl, self.min_ttl, self.unknown_kid_interval, self.retry_interval, self.max_stale) < 0:
            raise ValueError("JWKS cache times must not be negative")
        if self.min_ttl > self.max_ttl:
            raise ValueError("min_ttl must not exceed max_ttl")


def _directives(cache_control: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in cache_control.split(","):
        name, _, value = item.partition("=")
        out.setdefault(name.strip().lower(), value.strip().strip('"'))
    return out


def cache_ttl(headers: Mapping[str, str], policy: JWKSCachePolicy) -> float:
    """How long a JWKS response may be used, from its ``Cache-Control`` and ``Age`` headers."""
    directives = _directives(headers.get("cache-control", ""))
    ttl = policy.default_ttl
    max_age = directives.get("max-age", "")
    if "no-store" in directives or "no-cache" in directives:
        ttl = 0.0  # clamped up to min_ttl: we must not fetch on every request, whatever the server says
    elif max_age.isdigit() and len(max_age) <= 10:
        ttl = float(max_age)
        age = headers.get("age", "").strip()
        if age.isdigit() and len(age) <= 10:
            ttl -= int(age)
    return min(max(ttl, policy.min_ttl), policy.max_ttl)


def log_skipped(keys: KeySet) -> None:
    """Log each JWKS entry the key set could not use, once per process: its ``kid`` and the reason.

    Only the kid and a reason code: nothing of the key material.
    """
    for kid, reason in keys.skipped:
        _log_skipped_once(kid, reason)


# Memoized so that each entry is logged once: a JWKS is refetched every few minutes, and the same odd
# entry would otherwise be logged each time. Bounded, so a hostile JWKS cannot grow it without limit.
@functools.lru_cache(maxsize=1024)
def _log_skipped_once(kid: str | None, reason: str) -> None:
    logger.warning(
        "dpop JWKS entry skipped: kid=%r reason=%s", (kid or "")[:64] or None, reason, extra={"dpop_reason": reason}
    )


def parse_jwks(response: HTTPResponse) -> KeySet:
    """The usable signing keys of a JWKS response, or a 503 (the server sent something unusable).

    Unusable entries are skipped (and logged once); only a JWKS without any usable key is refused.
    """
    if response.status != 200:
        raise TokenValidationUnavailable("jwks_fetch_failed", diagnostics={"status": response.status})
    try:
        keys = KeySet(json.loads(response.body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenValidationUnavailable("jwks_malformed", diagnostics={"error": "not a JWKS"}) from None
    log_skipped(keys)
    if not len(keys):
        raise TokenValidationUnavailable("jwks_malformed", diagnostics={"error": "no usable signing key"})
    return keys


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """The cache's answer for one token: the keys to use (``None``: none usable), and whether to fetch first.

    ``generation`` identifies the cache state the answer was based on; it changes when a fetch
    starts and when it ends. A request that decided to fetch, then waited for another request's
    fetch, sees a newer generation and does not fetch again (single flight).
    """

    keys: KeySet | None
    fetch: bool
    generation: int
    failing: bool


@dataclass(frozen=True, slots=True)
class _State:
    keys: KeySet | None = None
    expires_at: float = 0.0
    last_attempt: float | None = None
    failing: bool = False
    generation: int = 0


class JWKSCache:
    """Thread-safe holder of the current key set. Never held locked across I/O."""

    def __init__(self, policy: JWKSCachePolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._state = _State()

    @property
    def generation(self) -> int:
        return self._state.generation

    @property
    def keys(self) -> KeySet | None:
        return self._state.keys

    def lookup(self, kid: str | None, now: float) -> KeyLookup:
        """Which keys to use for a token with ``kid``, and whether a fetch should come first."""
        s = self._state  # one consistent snapshot: _State is replaced, never mutated
        p = self.policy
        since_attempt = float("inf") if s.last_attempt is None else now - s.last_attempt
        may_retry = not s.failing or since_attempt >= p.retry_interval
        if s.keys is None:
            return KeyLookup(None, may_retry, s.generation, s.failing)
        if now >= s.expires_at:
            usable = s.keys if now < s.expires_at + p.max_stale else None
            return KeyLookup(usable, may_retry, s.generation, s.failing)
        if not s.keys.has_kid(kid):
            # A new key may have been published: look, but at most once per interval.
            return KeyLookup(s.keys, may_retry and since_attempt >= p.unknown_kid_interval, s.generation, s.failing)
        return KeyLookup(s.keys, False, s.generation, s.failing)

    def begin_fetch(self, now: float) -> None:
        """Record an attempt before doing I/O, so that even a crash mid-fetch rate-limits the next one."""
        with self._lock:
            s = self._state
            self._state = _State(s.keys, s.expires_at, now, s.failing, s.generation + 1)

    def fetched(self, response: HTTPResponse, now: float) -> None:
        """Install the keys of a JWKS response; a 503 (keeping the old keys) if it is unusable."""
        try:
            keys = parse_jwks(response)
        except TokenValidationUnavailable:
            self.failed()
            raise
        ttl = cache_ttl(response.headers, self.policy)
        with self._lock:
            s = self._state
            self._state = _State(keys, now + ttl, s.last_attempt, False, s.generation + 1)

    def failed(self) -> None:
        """Record a failed fetch. The keys we had stay."""
        with self._lock:
            s = self._state
            self._state = _State(s.keys, s.expires_at, s.last_attempt, True, s.generation + 1)


def choose_keys(lookup: KeyLookup, token: ParsedAccessToken) -> list[PublicKey]:
    """Turn the final lookup (after any fetch) into the keys to verify ``token`` with, or the right error."""
    if lookup.keys is None:
        raise TokenValidationUnavailable("jwks_unavailable")
    candidates = lookup.keys.candidates(token.kid, token.spec)
    if not candidates:
        if lookup.failing and not lookup.keys.has_kid(token.kid):
            # The key may be one the server published while we could not reach it: we cannot tell.
            raise TokenValidationUnavailable("jwks_unavailable", diagnostics={"kid_unknown": True})
        raise InvalidTokenError("token_unknown_key", "Access token signed by an unknown key")
    return candidates
