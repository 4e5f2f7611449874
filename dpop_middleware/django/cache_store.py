"""A replay store on the project's own Django cache (``cache.add``), so Django users configure nothing new.

``cache.add`` stores a key only if it is absent and says whether it did. On the Redis backend
(``SET NX``) and the memcached backends (``add``) that is one atomic server-side operation, so two
workers receiving the same proof at the same instant cannot both accept it. Other backends:

* ``LocMemCache``: atomic, but per process: with several workers a proof can be replayed against
  another worker (system check ``dpop_middleware.W002``).
* ``FileBasedCache``: ``add`` is a read-then-write, not atomic across processes (``W003``).
* ``DummyCache``: ``add`` always says "added": no replay protection at all (``E004``).

Errors raised by the cache (server down, timeout) propagate to the verifier, which answers 503 and
never accepts the request.
"""

from __future__ import annotations

import math

from django.core.cache import caches

__all__ = ["DjangoCacheReplayStore"]


class DjangoCacheReplayStore:
    """:class:`~dpop_middleware.ports.ReplayStore` on ``django.core.cache.caches[alias]``.

    The cache is looked up on every call because Django's cache connections are per thread (and
    per async context); the lookup is a dictionary access.
    """

    default_prefix = "dpop:jti:"

    def __init__(self, alias: str = "default", *, key_prefix: str = default_prefix) -> None:
        self.alias = alias
        self.key_prefix = key_prefix

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds (rounded up: never shorter than asked)."""
        # Hex keeps the key within memcached's rules (no spaces or control characters, < 250 bytes).
        added = caches[self.alias].add(self.key_prefix + key.hex(), b"1", timeout=max(1, math.ceil(ttl)))
        return bool(added)

    def __repr__(self) -> str:
        return f"DjangoCacheReplayStore(alias={self.alias!r}, key_prefix={self.key_prefix!r})"
