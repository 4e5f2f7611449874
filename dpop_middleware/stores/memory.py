"""In-process replay store: thread-safe, bounded, and never evicting a live entry.

Why not cachetools here: its caches are pure Python with several calls and linked-list/heap
updates per operation; measured in the verifier's hot path, a ``TLRUCache`` cost a sizeable share
of an ES256 signature check per request, and several times the memory per entry. A dict of expiries
plus a FIFO of insertions does the same job for a fraction of both (figures:
``docs/performance-notes.md``; ``bench/memory.py``), and lets the store
*refuse* when full instead of evicting, which no cachetools cache does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..core.errors import ReplayStoreUnavailable
from .process_guard import PerProcessRefusal, ProcessGuard, shared_guard

__all__ = ["MemoryReplayStore"]

logger = logging.getLogger("dpop_middleware")


class MemoryReplayStore:
    """Remembers proofs in this process only.

    Fine for a single-process server and for tests; with several workers a proof replayed against
    another worker would go unnoticed, so use the Redis store (or a shared Django cache) there. To
    fail closed, the store refuses to serve (503, one ERROR log naming ``setting``) when it finds
    sibling worker processes of the same server (see :mod:`~dpop_middleware.stores.process_guard`),
    unless ``allow_multiple_processes`` says the deployment knows better (e.g. sticky routing by
    key, which no proof guarantees: use with care).

    ``max_entries`` bounds memory (~200 bytes an entry). When it is reached, expired entries are
    purged; if every entry is still live, the store *refuses* (the request gets 503) rather than
    evicting a live entry, which would reopen a replay window. Size it as peak proofs per second
    times the replay window (``max_age + 2 * clock_skew``, 80 s by default).

    The clock is the wall clock, like the one ``iat`` is judged by: if the two differed, a clock
    step could end an entry while its proof is still acceptable.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float] = time.time,
        allow_multiple_processes: bool = False,
        setting: str = "replay_store",
        guard: ProcessGuard | None = None,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive integer, not {max_entries!r}")
        self.max_entries = max_entries
        self.setting = setting
        self._guard = None if allow_multiple_processes else (guard or shared_guard())
        self._per_process_refusal = PerProcessRefusal(
            "the in-memory replay store",
            f"Set {setting} to a shared store (Redis, or a Django cache all workers share), or allow a "
            "per-process store explicitly if you know every request of a client reaches this process.",
        )
        self._clock = clock
        self._expiry: dict[bytes, float] = {}
        # Insertion order; with one TTL this is also expiry order, so purging pops from the left.
        self._order: deque[tuple[float, bytes]] = deque()
        self._lock = threading.Lock()
        self.refusals = 0

    def __len__(self) -> int:
        """Live entries (expired ones are purged first)."""
        with self._lock:
            self._purge(self._clock(), sweep=True)
            return len(self._expiry)

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; ``False`` if it is already live."""
        guard = self._guard
        if guard is not None and guard.has_siblings():
            raise self._per_process_refusal(guard.problem)
        now = self._clock()
        with self._lock:
            expiry = self._expiry
            known = expiry.get(key)
            if known is not None and known > now:
                return False
            if len(expiry) >= self.max_entries:
                self._purge(now, sweep=True)
                expiry = self._expiry  # a sweep may have rebuilt it
            if len(expiry) < self.max_entries:
                expires = now + ttl
                expiry[key] = expires
                order = self._order
                order.append((expires, key))
                if order[0][0] <= now:  # amortized: keeps the store from holding dead entries
                    self._purge(now, limit=2)
                return True
            self.refusals += 1
        logger.warning(
            "dpop replay store full: %d live entries; refusing requests until entries expire. "
            "Size max_entries as peak proofs per second x replay window, or use a shared store.",
            self.max_entries,
            extra={"dpop_reason": "replay_store_full"},
        )
        raise ReplayStoreUnavailable("replay_store_full", "Replay store full")

    def _purge(self, now: float, *, limit: int = -1, sweep: bool = False) -> None:
        """Drop expired entries from the front of the FIFO (at most ``limit``; -1: all).

        Entries with a longer TTL (nonce-healed proofs) can stand in front of shorter ones; a
        ``sweep`` then rebuilds both structures from the live entries (only when the store is full).
        """
        order, expiry = self._order, self._expiry
        while order and order[0][0] <= now and limit != 0:
            expires, key = order.popleft()
            if expiry.get(key) == expires:  # not re-added since
                del expiry[key]
            limit -= 1
        if sweep and len(expiry) >= self.max_entries:
            live = {k: e for k, e in expiry.items() if e > now}
            if len(live) != len(expiry):
                self._expiry = live
                self._order = deque(sorted((e, k) for k, e in live.items()))
