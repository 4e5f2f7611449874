"""The asyncio store against a real redis-server: one connection per loop, anything odd fails closed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
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


def test_closing_from_another_loop_after_the_first_one_ended_does_not_raise(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    assert asyncio.run(store.add_if_absent(os.urandom(16), 30)) is True
    asyncio.run(store.aclose())  # e.g. a test fixture's teardown on a loop of its own
    assert asyncio.run(store.add_if_absent(os.urandom(16), 30)) is True  # and it can serve again


def test_a_client_passed_in_gets_back_the_connection_of_each_loop_that_ended(redis_port: int) -> None:
    client = redis.asyncio.Redis(port=redis_port, socket_timeout=5, socket_connect_timeout=5)
    store = AsyncRedisReplayStore(client)
    pool = client.connection_pool
    for _ in range(20):  # e.g. one event loop per test, the client a session fixture
        assert asyncio.run(store.add_if_absent(os.urandom(16), 30)) is True
    # One connection, reconnected on each new loop; before, each ended loop's stayed checked out forever.
    assert len(pool._in_use_connections) + len(pool._available_connections) == 1
    gc.collect()  # the ended loops' sockets, which only the collector can close
    assert _clients(redis_port) == 1


class _CountingWrites:
    """A real ``redis.asyncio`` client whose socket writes are counted, with the ``SET``s in each."""

    def __init__(self, port: int) -> None:
        self.client = redis.asyncio.Redis(port=port, socket_timeout=5, socket_connect_timeout=5)
        self.writes: list[int] = []
        pool = self.client.connection_pool
        get_connection = pool.get_connection

        async def counted_connection(*args: object, **kwargs: object) -> object:
            conn = await get_connection(*args, **kwargs)  # type: ignore[arg-type]
            send = conn.send_packed_command

            async def counted(command: list[bytes], *a: object, **k: object) -> None:
                self.writes.append(b"".join(command).count(b"$3\r\nSET\r\n"))
                await send(command, *a, **k)  # type: ignore[arg-type]

            conn.send_packed_command = counted  # type: ignore[method-assign]
            return conn

        pool.get_connection = counted_connection  # type: ignore[method-assign,assignment]


async def test_requests_that_arrive_while_one_is_in_flight_go_in_one_write(redis_port: int) -> None:
    counting = _CountingWrites(redis_port)
    store = AsyncRedisReplayStore(counting.client)
    keys = [os.urandom(16) for _ in range(40)]
    answers = await asyncio.gather(*(store.add_if_absent(k, 30) for k in keys + keys[:10]))
    assert answers == [True] * 40 + [False] * 10
    # The first request goes alone; the 49 that queue behind it share the next write or two.
    assert counting.writes[0] == 1 and sum(counting.writes) == 50 and len(counting.writes) <= 3, counting.writes
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        assert all(raw.pttl(b"dpop:jti:" + k) > 25_000 for k in keys)  # each its own SET NX PX
    await store.aclose()
    await counting.client.aclose()


async def test_steady_load_from_several_clients_is_all_answered(redis_port: int) -> None:
    """Requests keep arriving as the sender empties its queue: none may fall between two senders."""
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")

    async def client() -> list[bool]:
        return [await store.add_if_absent(os.urandom(16), 30) for _ in range(100)]

    answers = await asyncio.gather(*(client() for _ in range(4)))
    assert answers == [[True] * 100] * 4
    await store.aclose()


async def test_lone_requests_each_write_their_own_command_on_one_held_connection(redis_port: int) -> None:
    counting = _CountingWrites(redis_port)
    store = AsyncRedisReplayStore(counting.client)
    for _ in range(3):
        assert await store.add_if_absent(os.urandom(16), 30) is True
    assert counting.writes == [1, 1, 1]
    pool = counting.client.connection_pool
    held = store._batch.lane.conn  # type: ignore[union-attr]
    other = await pool.get_connection()
    assert other is not held  # held by this loop, not back in the pool between commands
    await pool.release(other)
    await store.aclose()
    assert await pool.get_connection() is held  # handed back to the client that owns it
    await counting.client.aclose()


async def test_a_refused_batch_fails_every_request_in_it_closed(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", "1")
        try:
            answers = await asyncio.gather(
                *(store.add_if_absent(os.urandom(16), 30) for _ in range(20)), return_exceptions=True
            )
        finally:
            raw.config_set("maxmemory", "0")
    assert all(isinstance(a, ReplayStoreUnavailable) for a in answers), answers
    assert {a.diagnostics["redis_error"] for a in answers} <= {"OOM", "OutOfMemoryError"}  # type: ignore[union-attr]
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


async def test_a_killed_connection_fails_the_request_that_finds_it_and_the_queue_reconnects(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        raw.client_kill_filter(_type="normal", skipme=True)
    keys = [os.urandom(16) for _ in range(10)]
    answers = await asyncio.gather(*(store.add_if_absent(k, 30) for k in keys), return_exceptions=True)
    assert isinstance(answers[0], ReplayStoreUnavailable)  # retries are off: it fails closed
    assert answers[1:] == [True] * 9  # the queued batch goes on a new connection
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        assert [bool(raw.exists(b"dpop:jti:" + k)) for k in keys] == [False] + [True] * 9  # none accepted blind
    assert await store.add_if_absent(keys[0], 30) is True  # the one refused was never recorded
    await store.aclose()


async def test_cancelling_the_request_in_flight_leaves_the_queued_ones_answered(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    keys = [os.urandom(16) for _ in range(10)]
    tasks = [asyncio.ensure_future(store.add_if_absent(k, 30)) for k in keys]
    await asyncio.sleep(0)  # the first is in flight, the rest queued
    tasks[0].cancel()
    tasks[5].cancel()  # a queued one: skipped, the others unaffected
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and isinstance(results[5], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i not in (0, 5)] == [True] * 8
    assert await store.add_if_absent(keys[1], 30) is False
    await store.aclose()


async def test_wait_without_a_replica_fails_every_request_of_a_batch_closed(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0", wait_replicas=1, wait_timeout_ms=20)
    answers = await asyncio.gather(*(store.add_if_absent(os.urandom(16), 30) for _ in range(8)), return_exceptions=True)
    assert [getattr(a, "diagnostics", a) for a in answers] == [{"store_error": "replica_not_acknowledged"}] * 8
    await store.aclose()


def _sender() -> asyncio.Task[object] | None:
    """The store's sender task, if one is running (found as any shutdown helper would find it)."""
    for task in asyncio.all_tasks():
        if task.get_coro().__qualname__ == "_Batch._send_all":  # type: ignore[union-attr]
            return task
    return None


async def test_a_sender_cancelled_before_it_starts_fails_its_queue_and_the_store_goes_on(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    leader = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    await asyncio.sleep(0)  # the leader's SET is in flight
    follower = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    while (sender := _sender()) is None:
        await asyncio.sleep(0)
    sender.cancel()  # before its first step: no try/finally of its own ever runs
    assert await leader is True
    with pytest.raises(ReplayStoreUnavailable) as info:
        await asyncio.wait_for(follower, 5)
    assert info.value.diagnostics == {"store_error": "cancelled"}
    assert await asyncio.wait_for(store.add_if_absent(os.urandom(16), 30), 5) is True  # not stuck behind it
    await store.aclose()


async def test_no_sender_is_started_for_requests_that_were_all_cancelled(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    leader = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    await asyncio.sleep(0)
    followers = [asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30)) for _ in range(3)]
    await asyncio.sleep(0)  # queued
    for follower in followers:
        follower.cancel()
    assert await leader is True
    assert _sender() is None  # else it would be left pending when the loop closes
    await store.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_command(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        raw.client_kill_filter(_type="normal", skipme=True)  # as a restart or Redis's idle timeout would
    await asyncio.sleep(0.05)  # the loop sees the close
    key = os.urandom(16)
    assert await store.add_if_absent(key, 30) is True  # not a 503 for the first request after idling
    assert await store.add_if_absent(key, 30) is False
    await store.aclose()


async def test_a_reply_nobody_read_is_never_taken_for_the_answer_to_a_later_command(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    seen = os.urandom(16)
    assert await store.add_if_absent(seen, 30) is True
    held = store._batch.lane.conn  # type: ignore[union-attr]
    await held.send_command("SET", b"elsewhere", b"1")  # its "+OK" is left on the connection
    await asyncio.sleep(0.05)
    # Read as the answer to this SET NX, that stray OK would accept a replayed proof.
    assert await store.add_if_absent(seen, 30) is False
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


class _SwallowsCancellation:
    """A lane that answers even when cancelled, as CPython 3.11's ``wait_for`` can inside redis-py."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def round_trip(self, commands: list[tuple[object, ...]]) -> list[object]:
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: the task stays marked cancelled
            await asyncio.sleep(5)
        return [b"OK"] * len(commands)

    async def close(self, *, hand_back: bool) -> None:
        return None


async def test_a_cancellation_swallowed_below_the_store_is_still_honoured(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    batch = store._loop_batch()
    lane = batch.lane = _SwallowsCancellation()  # type: ignore[assignment]
    request = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    await lane.entered.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert not batch.busy  # and the loop's lane is free for the next request
    await store.aclose()


async def test_closing_mid_exchange_never_hands_an_unread_reply_to_the_next_user(redis_port: int) -> None:
    """aclose() with your client: its connection goes back to the pool only once its reply was read."""
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        for steps in range(6):
            for _ in range(20):
                replayed = os.urandom(16)
                raw.set(b"dpop:jti:" + replayed, 1)  # this proof was seen before
                client = redis.asyncio.Redis(port=redis_port, socket_timeout=2)
                store = AsyncRedisReplayStore(client)
                assert await store.add_if_absent(os.urandom(16), 30) is True  # the loop holds a connection
                in_flight = asyncio.ensure_future(asyncio.wait_for(store.add_if_absent(os.urandom(16), 30), 5))
                for _ in range(steps):
                    await asyncio.sleep(0)
                await store.aclose()
                try:
                    again = await asyncio.wait_for(store.add_if_absent(replayed, 30), 5)
                except ReplayStoreUnavailable:
                    again = False
                assert again is False, f"a replay accepted after closing {steps} loop steps into an exchange"
                await asyncio.gather(in_flight, return_exceptions=True)
                await client.aclose()


async def test_closing_with_requests_queued_leaves_the_pool_whole(redis_port: int) -> None:
    pool = redis.asyncio.BlockingConnectionPool(port=redis_port, max_connections=1, timeout=2, socket_timeout=2)
    client = redis.asyncio.Redis(connection_pool=pool)
    store = AsyncRedisReplayStore(client)
    assert await store.add_if_absent(os.urandom(16), 30) is True
    lone = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30)) for _ in range(3)]
    await asyncio.sleep(0)
    await store.aclose()
    answers = await asyncio.gather(lone, *queued, return_exceptions=True)
    assert all(a is True or isinstance(a, ReplayStoreUnavailable) for a in answers), answers
    # The only connection is back: the client's owner can use it (no checkout left behind).
    assert await asyncio.wait_for(client.ping(), 5) is True
    await client.aclose()


async def test_a_request_cancelled_while_redis_stalls_is_cancelled_at_once() -> None:
    """Cancelled right after its write, on Python 3.11 too: no wait for the read timeout, no 503."""
    with redis_process() as (port, pid):
        store = AsyncRedisReplayStore(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        assert await store.add_if_absent(os.urandom(16), 30) is True
        for steps in range(4):
            os.kill(pid, signal.SIGSTOP)
            try:
                request = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
                for _ in range(steps):
                    await asyncio.sleep(0)
                request.cancel()
                started = time.monotonic()
                with pytest.raises(asyncio.CancelledError):
                    await request
                assert time.monotonic() - started < 0.25, f"cancelled after {steps} steps, answered late"
            finally:
                os.kill(pid, signal.SIGCONT)
        key = os.urandom(16)
        assert await store.add_if_absent(key, 30) is True  # and the store is in step afterwards
        assert await store.add_if_absent(key, 30) is False
        await store.aclose()


def _connections_opened(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=5) as raw:
        return int(raw.info("stats")["total_connections_received"])


def test_event_loops_in_several_threads_each_keep_one_connection(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    answers: list[bool] = []

    def serve() -> None:
        async def requests() -> None:
            for _ in range(100):
                answers.append(await store.add_if_absent(os.urandom(16), 30))
                await asyncio.sleep(0)  # let the other thread's loop in between
            await store.aclose()  # this loop's client; the other thread's stays its own

        asyncio.run(requests())

    before = _connections_opened(redis_port)
    threads = [threading.Thread(target=serve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 200
    # One client per loop, kept while it runs; not one per switch between loops.
    assert _connections_opened(redis_port) - before - 1 == 2  # (minus the probe's own)


async def test_closing_while_the_first_request_connects_leaves_no_connection_open(redis_port: int) -> None:
    for steps in range(1, 6):
        store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
        before = _clients(redis_port)
        request = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
        for _ in range(steps):
            await asyncio.sleep(0)
        await store.aclose()
        await asyncio.gather(request, return_exceptions=True)  # answered or 503: either way settled
        await asyncio.sleep(0.05)
        assert _clients(redis_port) == before, f"a socket left open by a store closed {steps} steps into a connect"


async def test_a_closed_cluster_lane_sends_nothing_more() -> None:
    from dpop_middleware.stores.redis import _ClusterCommands

    class NoCalls:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the closed store used its cluster client ({name})")

    lane = _ClusterCommands(NoCalls())
    await lane.close(hand_back=False)
    with pytest.raises(redis.exceptions.ConnectionError, match="closed"):
        await lane.round_trip([("SET", b"k", b"1", "NX", "PX", 1000)])
