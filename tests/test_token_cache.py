"""TokenCache: the verifier's cache of validated tokens (exp-capped TTL, bounded, thread-safe without the GIL)."""

from __future__ import annotations

import hashlib
import sys
import threading
from typing import Any

import pytest

from dpop_middleware.core.binding import TokenFacts, token_facts
from dpop_middleware.token_cache import NO_EXP_TTL, TokenCache

NOW = 1_000_000.0


def _facts(**claims: Any) -> TokenFacts:
    return token_facts({"sub": "alice", **claims})


def _hash(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def test_returns_what_was_put_until_exp() -> None:
    cache = TokenCache(10, 3600.0)
    facts = _facts(exp=NOW + 100)
    cache.put(_hash(1), facts, NOW)
    assert cache.get(_hash(1), NOW + 99.9) is facts
    assert cache.get(_hash(1), NOW + 100) is None


def test_unknown_token_is_none() -> None:
    assert TokenCache(10, 3600.0).get(_hash(1), NOW) is None


def test_ttl_is_capped_by_max_ttl() -> None:
    cache = TokenCache(10, 30.0)
    cache.put(_hash(1), _facts(exp=NOW + 1000), NOW)
    assert cache.get(_hash(1), NOW + 29.9) is not None
    assert cache.get(_hash(1), NOW + 30) is None


def test_token_without_exp_is_kept_only_briefly() -> None:
    cache = TokenCache(10, 3600.0)
    cache.put(_hash(1), _facts(), NOW)
    assert cache.get(_hash(1), NOW + NO_EXP_TTL - 0.1) is not None
    assert cache.get(_hash(1), NOW + NO_EXP_TTL) is None


def test_token_without_exp_is_capped_by_a_smaller_max_ttl() -> None:
    cache = TokenCache(10, 5.0)
    cache.put(_hash(1), _facts(), NOW)
    assert cache.get(_hash(1), NOW + 5) is None


def test_expired_token_is_not_stored() -> None:
    cache = TokenCache(10, 3600.0)
    cache.put(_hash(1), _facts(exp=NOW), NOW)
    cache.put(_hash(2), _facts(exp=NOW - 5), NOW)
    assert cache._entries == {}


@pytest.mark.parametrize(("size", "max_ttl"), [(0, 3600.0), (10, 0.0)])
def test_disabled_cache_stores_nothing(size: int, max_ttl: float) -> None:
    cache = TokenCache(size, max_ttl)
    assert cache.enabled is False
    cache.put(_hash(1), _facts(exp=NOW + 100), NOW)
    assert cache.get(_hash(1), NOW) is None


def test_oldest_entry_is_evicted_when_full() -> None:
    cache = TokenCache(3, 3600.0)
    for n in range(4):
        cache.put(_hash(n), _facts(exp=NOW + 100), NOW)
    assert cache.get(_hash(0), NOW) is None
    assert all(cache.get(_hash(n), NOW) is not None for n in (1, 2, 3))
    assert len(cache._entries) == 3


def test_many_threads_keep_the_bound_and_raise_nothing() -> None:
    size, threads, per_thread = 64, 8, 3000
    cache = TokenCache(size, 3600.0)
    facts = _facts(exp=NOW + 100)
    errors: list[BaseException] = []
    overflow: list[int] = []
    start = threading.Barrier(threads + 1)

    def writer(offset: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                key = _hash(offset * per_thread + n)
                cache.put(key, facts, NOW)
                got = cache.get(key, NOW)
                assert got is None or got is facts  # a concurrent writer may already have evicted it
                cache.get(_hash(n), NOW)
                if len(cache._entries) > size:
                    overflow.append(len(cache._entries))
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible (under the GIL)
    try:
        for worker in workers:
            worker.start()
        start.wait()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert overflow == []
    assert len(cache._entries) == size
