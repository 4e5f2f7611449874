"""The asyncio store's pipelined connection: replies settle requests in order, anything odd fails closed.

The first half drives ``RedisPipeline`` with a recording transport (reply bytes fed by hand, split
anywhere); the second runs ``AsyncRedisReplayStore`` against a real redis-server.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator

import pytest
import redis
from concurrency_apps.support import redis_process

from dpop_middleware.core.errors import ReplayStoreUnavailable
from dpop_middleware.stores.redis import AsyncRedisReplayStore
from dpop_middleware.stores.redis_pipeline import RedisPipeline


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.aborted = False
        self.closed = False
        self.protocol: object = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True


def _pipeline(timeout: float | None = 5.0) -> tuple[RedisPipeline, RecordingTransport]:
    transport = RecordingTransport()
    return RedisPipeline(asyncio.get_running_loop(), transport, timeout), transport  # type: ignore[arg-type]


async def test_commands_of_one_iteration_leave_in_one_write_and_replies_settle_in_order() -> None:
    pipeline, transport = _pipeline()
    futures = [pipeline.send(b"cmd%d;" % i) for i in range(3)]
    assert transport.writes == []  # nothing is written before the loop runs the flush
    await asyncio.sleep(0)
    assert transport.writes == [b"cmd0;cmd1;cmd2;"]
    # Split anywhere, even inside a reply's CRLF.
    for chunk in (b"+O", b"K\r\n$-", b"1\r", b"\n_\r\n"):
        pipeline.data_received(chunk)
    assert [f.result() for f in futures] == [True, False, False]
    assert not pipeline.closed


async def test_an_error_reply_fails_that_request_only() -> None:
    pipeline, _ = _pipeline()
    first, second = pipeline.send(b"a"), pipeline.send(b"b")
    pipeline.data_received(b"-OOM command not allowed when used memory > 'maxmemory'.\r\n+OK\r\n")
    with pytest.raises(ReplayStoreUnavailable) as info:
        first.result()
    assert info.value.diagnostics == {"store_error": "ResponseError", "redis_error": "OOM"}
    assert second.result() is True
    assert not pipeline.closed


@pytest.mark.parametrize("reply", [b":1\r\n", b"$2\r\nOK\r\n", b"*1\r\n", b">3\r\n", b"+QUEUED\r\n"])
async def test_a_reply_that_is_no_set_nx_answer_fails_every_waiting_request(reply: bytes) -> None:
    pipeline, transport = _pipeline()
    futures = [pipeline.send(b"a"), pipeline.send(b"b")]
    pipeline.data_received(reply)
    for future in futures:
        with pytest.raises(ReplayStoreUnavailable) as info:
            future.result()
        assert info.value.diagnostics["store_error"] == "unexpected_reply"
    assert pipeline.closed and transport.aborted
    with pytest.raises(ConnectionError):
        pipeline.send(b"c")


async def test_a_reply_nobody_asked_for_and_an_endless_line_fail_closed() -> None:
    pipeline, transport = _pipeline()
    pipeline.data_received(b"+OK\r\n")
    assert pipeline.closed and transport.aborted
    pipeline, transport = _pipeline()
    waiting = pipeline.send(b"a")
    pipeline.data_received(b"+" + b"x" * 10_000)
    assert pipeline.closed and transport.aborted
    with pytest.raises(ReplayStoreUnavailable):
        waiting.result()


async def test_a_cancelled_request_still_consumes_its_reply() -> None:
    pipeline, _ = _pipeline()
    cancelled, kept = pipeline.send(b"a"), pipeline.send(b"b")
    cancelled.cancel()
    pipeline.data_received(b"+OK\r\n$-1\r\n")
    assert kept.result() is False  # the second reply, not the first


async def test_no_reply_by_the_deadline_fails_every_waiting_request() -> None:
    pipeline, transport = _pipeline(timeout=0.05)
    first = pipeline.send(b"a")
    await asyncio.sleep(0.03)
    second = pipeline.send(b"b")
    pipeline.data_received(b"+OK\r\n")  # the first is answered in time; the timer moves to the second
    assert first.result() is True
    await asyncio.sleep(0.04)
    assert not second.done()  # its own deadline has not passed yet
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        second.result()
    assert pipeline.closed and transport.aborted


async def test_a_lost_connection_fails_waiting_requests_with_fresh_exceptions() -> None:
    pipeline, _ = _pipeline()
    futures = [pipeline.send(b"a"), pipeline.send(b"b")]
    pipeline.connection_lost(None)
    errors = [f.exception() for f in futures]
    assert all(isinstance(e, ConnectionError) for e in errors) and errors[0] is not errors[1]


async def test_close_fails_waiting_requests_and_closes_gracefully() -> None:
    pipeline, transport = _pipeline()
    waiting = pipeline.send(b"a")
    pipeline.close()
    assert isinstance(waiting.exception(), ConnectionError)
    assert transport.closed and not transport.aborted


async def test_a_connection_without_a_stream_transport_is_refused() -> None:
    class Opaque:
        pass

    with pytest.raises(ReplayStoreUnavailable) as info:
        RedisPipeline.take_over(Opaque(), 1.0)
    assert info.value.diagnostics["store_error"] == "unsupported_redis_client"


# -- against redis-server -----------------------------------------------------------------------


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
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0", client_name="dpop-kill-me")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    with redis.Redis(port=redis_port, socket_timeout=5) as raw:
        raw.client_kill_filter(_type="normal", skipme=True)
    for _ in range(50):  # the loop learns of the closed socket on its next read
        await asyncio.sleep(0.01)
        if store._pipeline is None or store._pipeline.closed:
            break
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


async def test_the_connection_survives_garbage_collection(redis_port: int) -> None:
    # redis-py's connection object is unreferenced once taken over; asyncio's StreamWriter closes
    # its transport when collected, so the pipeline must keep it alive.
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    pipeline = store._pipeline
    gc.collect()
    await asyncio.sleep(0.05)
    assert store._pipeline is pipeline and not pipeline.closed
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


async def test_resp3_clients_work(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0", protocol=3)
    key = os.urandom(16)
    assert await store.add_if_absent(key, 30) is True
    assert await store.add_if_absent(key, 30) is False  # RESP3 null, "_"
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
            assert info.value.diagnostics["redis_error"] == "OOM"
        finally:
            raw.config_set("maxmemory", "0")
    assert await store.add_if_absent(os.urandom(16), 30) is True
    await store.aclose()


async def test_a_request_cancelled_while_connecting_does_not_cancel_the_others(redis_port: int) -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{redis_port}/0")
    first = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    second = asyncio.ensure_future(store.add_if_absent(os.urandom(16), 30))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    await store.aclose()
