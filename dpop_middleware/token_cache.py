"""The verifier's cache of validated tokens, correct with or without the GIL."""

from __future__ import annotations

import threading

from .core.binding import TokenFacts
from .core.jose import numeric_date

__all__ = ["TokenCache"]

#: How long a token without ``exp`` is kept: we cannot know when it dies.
NO_EXP_TTL = 60.0


class TokenCache:
    """Validated tokens by SHA-256 of the token, each until its ``exp`` (capped by ``max_ttl``).

    When full, the oldest entry goes: a cache may forget, which only costs a re-validation.
    ``size`` or ``max_ttl`` of 0 disables it.

    Thread safety, GIL or not: every mutation (insert and eviction) holds one lock, so eviction's
    ``next(iter(...))`` never races another writer. ``get`` takes no lock: it is one ``dict.get``,
    which CPython makes atomic on a single dict also when free-threaded (PEP 703: each dict
    operation runs under the dict's own critical section), and it reads an immutable tuple. The
    read is on every request's path; a lock there would be paid by every request.
    """

    __slots__ = ("_entries", "_lock", "_max_ttl", "_size", "enabled")

    def __init__(self, size: int, max_ttl: float) -> None:
        self._size = size
        self._max_ttl = max_ttl
        self._entries: dict[bytes, tuple[float, TokenFacts]] = {}
        self._lock = threading.Lock()
        self.enabled = size > 0 and max_ttl > 0

    def get(self, token_hash: bytes, now: float) -> TokenFacts | None:
        """The facts of a validated token, or ``None`` (never seen, forgotten or expired)."""
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def put(self, token_hash: bytes, facts: TokenFacts, now: float) -> None:
        """Remember ``facts`` until the token's ``exp``, at most ``max_ttl`` (``NO_EXP_TTL`` without ``exp``)."""
        if not self.enabled:
            return
        exp = numeric_date(facts.claims.get("exp"))
        until = now + min(self._max_ttl, NO_EXP_TTL) if exp is None else min(exp, now + self._max_ttl)
        if until <= now:
            return
        entries = self._entries
        with self._lock:
            while len(entries) >= self._size:
                del entries[next(iter(entries))]  # the oldest: dicts keep insertion order
            entries[token_hash] = (until, facts)
