"""A validator's own cache of results, keyed by SHA-256 of the token (never the token itself).

The verifier keeps its own cache of validated claims in front of every validator; this one makes a
validator cheap when used on its own, and lets introspection remember *negative* answers, which the
verifier never caches. Both only ever return what a successful validation produced, so they cannot
disagree; at worst the same claims sit in two places until the token's ``exp``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cachetools

from ..core.errors import InvalidTokenError
from ..core.jose import numeric_date

__all__ = ["CachedResult", "ResultCache", "positive_until", "token_key"]

Claims = Mapping[str, Any]


def token_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def positive_until(claims: Claims, now: float, max_ttl: float, default_ttl: float) -> float:
    """Until when validated ``claims`` may be reused: their ``exp``, capped by ``max_ttl``.

    Without ``exp`` we cannot know when the token dies, so it is kept only ``default_ttl``.
    """
    exp = numeric_date(claims.get("exp"))
    if exp is None:
        return now + min(max_ttl, default_ttl)
    return min(exp, now + max_ttl)


@dataclass(frozen=True, slots=True)
class CachedResult:
    """A remembered answer: the token's claims, or (``claims`` ``None``) why the token was refused."""

    until: float
    claims: Claims | None
    reason: str = "token_invalid"
    description: str = "Invalid access token"

    def raise_if_refused(self) -> Claims:
        if self.claims is None:
            raise InvalidTokenError(self.reason, self.description)
        return self.claims


class ResultCache:
    """Bounded, thread-safe, each entry dropped at its own ``until``. ``size=0`` disables it."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.enabled = size > 0
        self._lock = threading.Lock()
        self._cache: cachetools.TLRUCache[bytes, CachedResult] = cachetools.TLRUCache(
            maxsize=max(size, 1), ttu=lambda _key, value, _now: value.until, timer=clock
        )

    def get(self, key: bytes) -> CachedResult | None:
        if not self.enabled:
            return None
        with self._lock:
            return self._cache.get(key)

    def put(self, key: bytes, claims: Claims, until: float, now: float) -> None:
        """Remember validated ``claims`` until ``until``."""
        self._put(key, CachedResult(until, claims), now)

    def put_refused(self, key: bytes, error: InvalidTokenError, until: float, now: float) -> None:
        """Remember that the token was refused, and why (never for an outage: only a bad token)."""
        self._put(key, CachedResult(until, None, error.reason, error.description), now)

    def _put(self, key: bytes, entry: CachedResult, now: float) -> None:
        if not self.enabled or entry.until <= now:
            return
        with self._lock:
            self._cache[key] = entry

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
