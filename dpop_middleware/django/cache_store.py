"""A replay store on the project's own Django cache (``cache.add``), so Django users configure nothing new.

``cache.add`` stores a key only if it is absent and says whether it did. On the Redis backend
(``SET NX``) and the memcached backends (``add``) that is one atomic server-side operation, so two
workers receiving the same proof at the same instant cannot both accept it. Other backends:

* ``LocMemCache``: atomic, but per process: with several workers a proof could be replayed against
  another worker. So, like the in-memory store, the store then refuses to serve (503
  ``replay_store_per_process``, one ERROR naming ``DPOP['REPLAY_STORE']``) when it finds sibling
  worker processes (:class:`~dpop_middleware.stores.process_guard.ProcessGuard`), unless
  ``DPOP['ALLOW_PER_PROCESS_STORE']`` is true (system check ``dpop_middleware.W002``).
* ``FileBasedCache``: ``add`` is a read-then-write, not atomic across processes (``W003``).
* ``DummyCache``: ``add`` always says "added": no replay protection at all. The store refuses to
  serve on it (503 ``replay_store_no_memory``, one ERROR), and system check ``E004`` says so.

Errors raised by the cache (server down, timeout) propagate to the verifier, which answers 503 and
never accepts the request.
"""

from __future__ import annotations

import logging
import math

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from ..stores.process_guard import LoggedRefusal, PerProcessRefusal, ProcessGuard, shared_guard

__all__ = ["DjangoCacheReplayStore"]

logger = logging.getLogger("dpop_middleware")


class DjangoCacheReplayStore:
    """:class:`~dpop_middleware.ports.ReplayStore` on ``django.core.cache.caches[alias]``.

    The cache is looked up on every call because Django's cache connections are per thread (and
    per async context); the lookup is a dictionary access.
    """

    default_prefix = "dpop:jti:"

    def __init__(
        self,
        alias: str = "default",
        *,
        key_prefix: str = default_prefix,
        allow_multiple_processes: bool = False,
        setting: str = "DPOP['REPLAY_STORE']",
        guard: ProcessGuard | None = None,
    ) -> None:
        self.alias = alias
        self.key_prefix = key_prefix
        self.setting = setting
        self._allow_multiple_processes = allow_multiple_processes
        self._guard = guard
        self._no_memory = LoggedRefusal("replay_store_no_memory", "Replay store remembers nothing")
        self._per_process_refusal = PerProcessRefusal(
            f"the replay cache {alias!r} is a LocMemCache, which",
            f"Point {setting} at a cache all workers share (Redis, memcached), or set "
            "DPOP['ALLOW_PER_PROCESS_STORE'] = True if every request of a client reaches this process.",
        )

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds (rounded up: never shorter than asked)."""
        cache = caches[self.alias]
        if isinstance(cache, LocMemCache) and not self._allow_multiple_processes:
            # A LocMemCache is one process's memory: exact only if this process serves alone.
            guard = self._guard or shared_guard()
            if guard.has_siblings():
                raise self._per_process_refusal(guard.problem)
        if isinstance(cache, DummyCache):
            self._refuse_dummy()
        # Hex keeps the key within memcached's rules (no spaces or control characters, < 250 bytes).
        added = cache.add(self.key_prefix + key.hex(), b"1", timeout=max(1, math.ceil(ttl)))
        return bool(added)

    def _refuse_dummy(self) -> None:
        raise self._no_memory(
            "dpop: the replay cache %r is a DummyCache, which remembers nothing, so every proof could be "
            "replayed; it refuses every request (503). Point DPOP['REPLAY_CACHE_ALIAS'] at a real cache.",
            self.alias,
        )

    def __repr__(self) -> str:
        return f"DjangoCacheReplayStore(alias={self.alias!r}, key_prefix={self.key_prefix!r})"
