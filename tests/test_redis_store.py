"""RedisReplayStore and AsyncRedisReplayStore against a real redis-server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from concurrency_apps.support import redis_argv, redis_process
from servers import free_port, running

from dpop_middleware import DPoPVerifier, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.errors import ReplayStoreUnavailable
from dpop_middleware.stores.redis import DEFAULT_PREFIX, AsyncRedisReplayStore, RedisReplayStore
from dpop_middleware.testing import TestIssuer, dpop_headers


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with redis_process() as (port, _):
        yield port


@pytest.fixture
def url(redis_port: int) -> str:
    return f"redis://127.0.0.1:{redis_port}/0"


@pytest.fixture
def raw(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port, socket_timeout=5)
    yield client
    client.close()


def _key() -> bytes:
    return os.urandom(16)  # what the verifier passes: a 16-byte digest


def _wait_gone(raw: redis.Redis, name: bytes) -> None:
    deadline = time.monotonic() + 5
    while raw.exists(name) and time.monotonic() < deadline:
        time.sleep(0.02)


# -- sync -------------------------------------------------------------------------------------


def test_add_if_absent_is_true_once(url: str, raw: redis.Redis) -> None:
    store = RedisReplayStore(url)
    key = _key()
    assert store.add_if_absent(key, 30) is True
    assert store.add_if_absent(key, 30) is False
    assert store.add_if_absent(_key(), 30) is True
    assert raw.get(DEFAULT_PREFIX + key) == b"1"
    store.close()


def test_ttl_is_set_in_milliseconds_rounded_up(url: str, raw: redis.Redis) -> None:
    store = RedisReplayStore(url)
    key = _key()
    store.add_if_absent(key, 80.0004)
    assert 79_000 < raw.pttl(DEFAULT_PREFIX + key) <= 80_001
    with pytest.raises(ValueError):
        store.add_if_absent(_key(), 0)


def test_entry_expires_and_key_is_usable_again(url: str, raw: redis.Redis) -> None:
    store = RedisReplayStore(url)
    key = _key()
    assert store.add_if_absent(key, 0.15) is True
    assert store.add_if_absent(key, 0.15) is False
    _wait_gone(raw, DEFAULT_PREFIX + key)
    assert store.add_if_absent(key, 0.15) is True


def test_prefix_namespaces_keys(url: str, raw: redis.Redis) -> None:
    a = RedisReplayStore(url, prefix="app-a:")
    b = RedisReplayStore(url, prefix=b"app-b:")
    key = _key()
    assert a.add_if_absent(key, 30) is True
    assert b.add_if_absent(key, 30) is True  # another app's namespace: not a replay
    assert a.add_if_absent(key, 30) is False
    assert raw.exists(b"app-a:" + key) and raw.exists(b"app-b:" + key)
    assert repr(a) == "RedisReplayStore(prefix=b'app-a:')"


def test_existing_client_is_used_and_left_open(raw: redis.Redis) -> None:
    store = RedisReplayStore(raw, prefix="mine:")
    assert store.client is raw
    assert store.add_if_absent(_key(), 30) is True
    store.close()
    assert raw.ping()
    with pytest.raises(TypeError):
        RedisReplayStore(raw, timeout=1.0)


def test_client_without_timeout_is_warned_about(redis_port: int, caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis(port=redis_port, socket_timeout=None)
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        RedisReplayStore(client)
    assert [r for r in caplog.records if getattr(r, "dpop_reason", "") == "replay_store_unbounded_timeout"]
    client.close()


def test_threads_racing_on_one_key_get_one_true(url: str) -> None:
    store = RedisReplayStore(url)
    key = _key()
    barrier = threading.Barrier(12)
    answers: list[bool] = []

    def race() -> None:
        barrier.wait()
        answers.append(store.add_if_absent(key, 30))

    threads = [threading.Thread(target=race) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * 11 + [True]


def test_unix_socket_url() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "redis.sock"
        port = free_port()
        with running([*redis_argv(port), "--unixsocket", str(sock)], port):
            deadline = time.monotonic() + 5
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            store = RedisReplayStore(f"unix://{sock}?db=0")
            key = _key()
            assert store.add_if_absent(key, 30) is True
            assert store.add_if_absent(key, 30) is False
            store.close()


def test_rediss_url_builds_a_tls_client_with_bounded_timeouts() -> None:
    store = RedisReplayStore("rediss://:secret@redis.invalid:6380/2", connect_timeout=0.2, timeout=0.4)
    pool = store.client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.2
    assert pool.connection_kwargs["socket_timeout"] == 0.4
    assert pool.connection_kwargs["db"] == 2
    assert "secret" not in repr(store)
    with pytest.raises(ValueError):
        RedisReplayStore("redis://localhost", timeout=0)
    with pytest.raises(ValueError):
        RedisReplayStore("http://localhost")


def test_refused_connection_is_unavailable() -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ReplayStoreUnavailable) as info:
        store.add_if_absent(_key(), 30)
    assert info.value.status == 503
    assert info.value.reason == "replay_store_unavailable"
    assert info.value.diagnostics["store_error"] == "ConnectionError"


@contextlib.contextmanager
def _paused_redis() -> Iterator[int]:
    with redis_process() as (port, pid):
        os.kill(pid, signal.SIGSTOP)
        try:
            yield port
        finally:
            os.kill(pid, signal.SIGCONT)


def test_stalled_server_times_out_as_unavailable() -> None:
    with _paused_redis() as port:
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0", connect_timeout=0.2, timeout=0.2)
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable) as info:
            store.add_if_absent(_key(), 30)
        # No retries: one read timeout, not redis-py's default of ten with backoff.
        assert time.monotonic() - started < 2.0
        assert info.value.diagnostics["store_error"] == "TimeoutError"


@contextlib.contextmanager
def _fake_redis(*replies: bytes, pause: float = 0.0, then_close: bool = False) -> Iterator[int]:
    """A loopback TCP server playing Redis: it answers the first command with ``replies``, in turn."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                for reply in replies:
                    conn.sendall(reply)
                    time.sleep(pause)
                if then_close:
                    conn.shutdown(socket.SHUT_WR)
                else:
                    time.sleep(0.6)  # past the store's read timeout: what never comes is a timeout

    server = threading.Thread(target=answer)
    server.start()
    try:
        yield listener.getsockname()[1]
    finally:
        server.join()
        listener.close()


@pytest.mark.filterwarnings("ignore:Call to '__init__':DeprecationWarning")  # lib_name: no CLIENT SETINFO
@pytest.mark.parametrize(
    ("replies", "then_close", "error"),
    [
        ([b":1\r\n"], False, "unexpected_reply"),
        ([b"?what\r\n"], False, "InvalidResponse"),
        ([b"+O" + b"K" * 5000], False, "TimeoutError"),  # no end of line: the read times out
        ([b"+OK"], True, "ConnectionError"),  # closed in the middle of the answer
        ([], True, "ConnectionError"),
    ],
)
def test_a_reply_that_is_no_set_nx_answer_fails_closed(replies: list[bytes], then_close: bool, error: str) -> None:
    with _fake_redis(*replies, then_close=then_close) as port:
        store = RedisReplayStore(
            f"redis://127.0.0.1:{port}/0", timeout=0.3, protocol=2, lib_name=None, lib_version=None
        )
        with pytest.raises(ReplayStoreUnavailable) as info:
            store.add_if_absent(_key(), 30)
        assert info.value.diagnostics["store_error"] == error
        store.close()


@pytest.mark.filterwarnings("ignore:Call to '__init__':DeprecationWarning")
def test_an_answer_split_across_segments_is_read_whole() -> None:
    with _fake_redis(b"+O", b"K\r\n", pause=0.05, then_close=True) as port:
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0", protocol=2, lib_name=None, lib_version=None)
        assert store.add_if_absent(_key(), 30) is True
        store.close()


def test_redis_refusing_writes_is_unavailable_and_the_connection_stays(url: str, raw: redis.Redis) -> None:
    store = RedisReplayStore(url)
    assert store.add_if_absent(_key(), 30) is True
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", "1")
    try:
        with pytest.raises(ReplayStoreUnavailable) as info:
            store.add_if_absent(_key(), 30)
        assert info.value.diagnostics["store_error"] == "ResponseError"
        assert info.value.diagnostics["redis_error"] in {"OOM", "OutOfMemoryError"}  # redis-py < 8 / 8
    finally:
        raw.config_set("maxmemory", "0")
    kept = store._local.client.connection
    assert store.add_if_absent(_key(), 30) is True
    assert store._local.client.connection is kept and kept._sock is not None
    store.close()


def test_a_killed_connection_fails_one_request_and_the_next_reconnects(url: str, raw: redis.Redis) -> None:
    store = RedisReplayStore(url)
    assert store.add_if_absent(_key(), 30) is True
    raw.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(ReplayStoreUnavailable) as info:
        store.add_if_absent(_key(), 30)
    assert info.value.diagnostics["store_error"] == "ConnectionError"
    assert store.add_if_absent(_key(), 30) is True
    store.close()


def test_two_verifiers_sharing_redis_reject_a_replay(url: str) -> None:
    """Two processes' worth of verifiers (separate objects, one Redis): a proof is used once."""
    issuer = TestIssuer(audience="https://api.test")
    key = DPoPKey.generate()
    first, second = (DPoPVerifier(issuer.validator(), replay_store=RedisReplayStore(url)) for _ in range(2))
    target = "https://api.test/protected"
    request = RequestInfo("GET", target, list(dpop_headers(key, "GET", target, issuer.token(key.jkt)).items()))
    assert first.authenticate(request).rejection is None
    rejection = second.authenticate(request).rejection
    assert rejection is not None and rejection.status == 401
    assert rejection.error.reason == "replayed"


# -- asyncio ----------------------------------------------------------------------------------


async def test_async_add_if_absent_and_prefix(url: str, raw: redis.Redis) -> None:
    store = AsyncRedisReplayStore(url, prefix="a:")
    key = _key()
    assert await store.add_if_absent(key, 30) is True
    assert await store.add_if_absent(key, 30) is False
    assert raw.exists(b"a:" + key)
    await store.aclose()


async def test_async_entry_expires(url: str, raw: redis.Redis) -> None:
    store = AsyncRedisReplayStore(url)
    key = _key()
    assert await store.add_if_absent(key, 0.15) is True
    assert await store.add_if_absent(key, 0.15) is False
    await asyncio.to_thread(_wait_gone, raw, DEFAULT_PREFIX + key)
    assert await store.add_if_absent(key, 0.15) is True
    await store.aclose()


async def test_async_concurrent_adds_get_one_true(url: str) -> None:
    store = AsyncRedisReplayStore(url, max_connections=20)
    key = _key()
    answers = await asyncio.gather(*(store.add_if_absent(key, 30) for _ in range(16)))
    assert sorted(answers) == [False] * 15 + [True]
    await store.aclose()


async def test_async_existing_client(redis_port: int) -> None:
    client = redis.asyncio.Redis(port=redis_port, socket_timeout=5)
    store = AsyncRedisReplayStore(client)
    assert await store.add_if_absent(_key(), 30) is True
    await store.aclose()
    assert await client.ping()
    await client.aclose()


async def test_async_refused_and_stalled_are_unavailable() -> None:
    store = AsyncRedisReplayStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ReplayStoreUnavailable):
        await store.add_if_absent(_key(), 30)
    with _paused_redis() as port:
        stalled = AsyncRedisReplayStore(f"redis://127.0.0.1:{port}/0", connect_timeout=0.2, timeout=0.2)
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable) as info:
            await stalled.add_if_absent(_key(), 30)
        assert time.monotonic() - started < 2.0
        assert info.value.diagnostics["store_error"] == "TimeoutError"
        await stalled.aclose()


async def test_async_verifier_with_redis_store(url: str) -> None:
    issuer = TestIssuer(audience="https://api.test")
    key = DPoPKey.generate()
    verifier = DPoPVerifier(issuer.validator(), replay_store=AsyncRedisReplayStore(url))
    target = "https://api.test/protected"
    request = RequestInfo("GET", target, list(dpop_headers(key, "GET", target, issuer.token(key.jkt)).items()))
    results = await asyncio.gather(*(verifier.aauthenticate(request) for _ in range(5)))
    assert sum(r.rejection is None for r in results) == 1
    assert {r.rejection.error.reason for r in results if r.rejection is not None} == {"replayed"}


def test_a_forked_child_gets_its_own_connection_and_the_parent_keeps_its(url: str, raw: redis.Redis) -> None:
    """gunicorn --preload: a store used before the fork must not share its socket with the child."""
    store = RedisReplayStore(url)
    seen = _key()
    assert store.add_if_absent(seen, 30) is True
    parent_connection = store._local.client.connection
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        code = 1
        try:
            fresh = store.add_if_absent(_key(), 30) is True
            replay = store.add_if_absent(seen, 30) is False
            own = store._local.client.connection is not parent_connection
            code = 0 if (fresh and replay and own) else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"\x00"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    # The parent's connection is still in step: answers go to the right process.
    key = _key()
    assert store.add_if_absent(key, 30) is True
    assert store.add_if_absent(key, 30) is False
    assert store._local.client.connection is parent_connection
    store.close()
