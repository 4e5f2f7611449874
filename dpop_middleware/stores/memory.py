"""In-process replay store on cachetools: thread-safe, bounded, and never evicting a live entry."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cachetools

from ..core.errors import ReplayStoreUnavailable

__all__ = ["MemoryReplayStore"]

logger = logging.getLogger("dpop_middleware")


def _expiry(_key: bytes, expires_at: float, _now: float) -> float:
    return expires_at


class MemoryReplayStore:
    """Remembers proofs in this process only.

    Fine for a single-process server and for tests; with several workers a proof replayed against
    another worker goes unnoticed, so use the Redis or Django-cache store there.

    ``max_entries`` bounds memory (~300 bytes an entry). When it is reached, expired entries are
    purged; if every entry is still live, the store *refuses* (the request gets 503) rather than
    evicting a live entry, which would reopen a replay window. Size it as peak proofs per second
    times the replay window (``max_age + 2 * clock_skew``).
    """

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._clock = clock
        # TLRUCache keeps a per-entry expiry (the value) and drops expired entries first.
        self._cache: cachetools.TLRUCache[bytes, float] = cachetools.TLRUCache(
            maxsize=max_entries, ttu=_expiry, timer=clock
        )
        self._lock = threading.Lock()
        self.refusals = 0

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; ``False`` if it is already live."""
        with self._lock:
            cache = self._cache
            if key in cache:  # ``in`` is False for an expired entry
                return False
            if len(cache) >= self.max_entries:
                cache.expire()
            if len(cache) < self.max_entries:
                cache[key] = self._clock() + ttl
                return True
            self.refusals += 1
        logger.warning(
            "dpop replay store full: %d live entries; refusing requests until entries expire. "
            "Size max_entries as peak proofs per second x replay window, or use a shared store.",
            self.max_entries,
            extra={"dpop_reason": "replay_store_full"},
        )
        raise ReplayStoreUnavailable("replay_store_full", "Replay store full")
