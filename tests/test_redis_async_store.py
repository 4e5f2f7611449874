"""The asyncio store against a real redis-server: one connection per loop, anything odd fails closed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import redis
from concurrency_apps.support import redis_process

from dpop_middleware.core.errors import ReplayStoreUnavailable
from dpop_middleware.stores.redis import AsyncRedisReplayStore


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with redis_process() as (port, _):
        yield port


def _clients(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=5) as raw:
        return int(raw.info("clients")["connected_clients"]) - 1  # not counting this one


async def test_concurrent_requests_share_one_connection(redis_port: int) -> None:
    before = _clients(redis_port)
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    keys = [os.urandom(16) for _ in range(50)]
    answers = await asyncio.gather(*(store.add_if_absent(k, 30) for k in keys + keys[:10]))
    assert answers == [True] * 50 + [False] * 10
    assert _clients(redis_port) - before == 1
    await store.aclose()


async def test_the_next_request_reconnects_after_the_connection_is_killed(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        raw.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(ReplayStoreUnavailable):  # retries are off: the request that finds it dead fails
        await store.add_if_absent(os.urandom(16), 30)
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


async def test_resp3_clients_work(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0", protocol=3)
    key = os.urandom(16)
    assert await store.add_if_absent(key, 30) is True
    assert await store.add_if_absent(key, 30) is False  # RESP3 null
    await store.aclose()


async def test_redis_refusing_writes_is_unavailable_and_the_connection_stays_usable(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", "1")
        try:
            with pytest.raises(ReplayStoreUnavailable) as info:
                await store.add_if_absent(os.urandom(16), 30)
            assert info.value.diagnostics["redis_error"] in {"OOM", "OutOfMemoryError"}
        finally:
            raw.config_set("maxmemory", "0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


async def test_a_request_cancelled_mid_command_does_not_break_the_others(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    first = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    second = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    key = os.urandom(16)  # and the connection is still in step afterwards
    assert await store.add_if_absent(key, 30) is True
    assert await store.add_if_absent(key, 30) is False
    await store.aclose()


def test_each_event_loop_gets_its_own_client(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    key = os.urandom(16)

    async def add_then_close() -> bool:
        try:
            return await store.add_if_absent(key, 30)
        finally:
            await store.aclose()

    assert asyncio.run(add_then_close()) is True
    assert asyncio.run(add_then_close()) is False  # a new loop: no "attached to a different loop"
