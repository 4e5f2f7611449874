"""Replay stores on Redis (or Valkey), shared by every worker and host: sync and asyncio.

Each request costs exactly one command, ``SET <prefix><key> 1 NX PX <ttl_ms>``: the check and the
write are one atomic step on the server, so two workers racing with the same proof cannot both
win (a ``GET`` then ``SET`` would let both through). Keys expire by themselves; nothing else is
ever sent.

Fail closed: any Redis error, refused connection or timeout raises
:class:`~dpop_middleware.ReplayStoreUnavailable`, which the verifier answers with 503 and
``Retry-After``. Timeouts are bounded and redis-py's own retries are switched off for clients we
build, so a stalled Redis costs a request at most ``connect_timeout + timeout`` seconds, not the
library's default minute of backed-off retries.

Both stores let redis-py connect and authenticate (URL forms, TLS, credentials, database), then
write the command to that connection's socket and read its one-line answer themselves; the extra
therefore pins the redis-py majors the tests run against. Install with
``pip install 'dpop-middleware[redis]'``::

    store = RedisReplayStore("redis://redis.internal:6379/0")            # WSGI / sync code
    astore = AsyncRedisReplayStore("rediss://:secret@redis.internal/0")  # ASGI / asyncio code
    verifier = DPoPVerifier(validator, replay_store=store)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
from typing import Any, Generic, TypeVar

try:
    import redis
    import redis.asyncio
    import redis.asyncio.retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry
except ModuleNotFoundError as exc:  # name the extra to install
    from ..extras import missing_extra

    missing_extra(exc, "redis", "the Redis replay stores need redis-py", "redis")

from ..core.errors import ReplayStoreUnavailable
from .redis_pipeline import RedisPipeline
from .redis_replies import MAX_REPLY, set_nx_outcome, unexpected_reply

__all__ = ["DEFAULT_PREFIX", "AsyncRedisReplayStore", "RedisReplayStore"]

logger = logging.getLogger("dpop_middleware")

DEFAULT_PREFIX = b"dpop:jti:"
DEFAULT_CONNECT_TIMEOUT = 0.5
DEFAULT_TIMEOUT = 0.5


def _as_bytes(prefix: bytes | str) -> bytes:
    return prefix.encode() if isinstance(prefix, str) else bytes(prefix)


def _ttl_ms(ttl: float) -> int:
    # Round up: an entry must never expire before the proof it guards stops being acceptable.
    if not ttl > 0:
        raise ValueError("ttl must be a positive number of seconds")
    return max(1, math.ceil(ttl * 1000))


def _set_nx_command(name: bytes, ttl_ms: int) -> bytes:
    """``SET <name> 1 NX PX <ttl_ms>`` in the Redis protocol (RESP arrays of bulk strings).

    Encoded here rather than by redis-py's ``pack_command``, whose general-purpose argument
    handling was a measurable share of a request's CPU in a server; bulk strings carry their length, so
    any key bytes are safe. A test pins the bytes to ``pack_command``'s.
    """
    ttl = b"%d" % ttl_ms
    return b"*6\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$%d\r\n%b\r\n" % (
        len(name),
        name,
        len(ttl),
        ttl,
    )


def _unavailable(exc: BaseException) -> ReplayStoreUnavailable:
    # Only the class name goes to the logs: redis-py messages can carry host names and URLs.
    return ReplayStoreUnavailable(diagnostics={"store_error": type(exc).__name__})


def _url_options(connect_timeout: float | None, timeout: float | None, options: dict[str, Any]) -> dict[str, Any]:
    for name, value in (("connect_timeout", connect_timeout), ("timeout", timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds")
    built = {
        "socket_connect_timeout": connect_timeout or DEFAULT_CONNECT_TIMEOUT,
        "socket_timeout": timeout or DEFAULT_TIMEOUT,
    }
    built.update(options)
    return built


def _warn_unbounded(client: Any) -> None:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if isinstance(kwargs, dict) and kwargs.get("socket_timeout", 0) is None:
        logger.warning(
            "dpop replay store: the Redis client has no socket_timeout, so a stalled Redis hangs requests "
            "instead of failing them with 503. Set socket_timeout (and socket_connect_timeout) on the client.",
            extra={"dpop_reason": "replay_store_unbounded_timeout"},
        )


def _check_client_args(connect_timeout: float | None, timeout: float | None, options: dict[str, Any]) -> None:
    if connect_timeout is not None or timeout is not None or options:
        raise TypeError("timeouts and client options apply to a URL; configure your own client directly")


ClientT = TypeVar("ClientT", redis.Redis, redis.asyncio.Redis)


class _RedisStore(Generic[ClientT]):
    """What both stores share: the key prefix, and a client built from a URL (ours) or passed in (yours)."""

    def __init__(
        self,
        client: ClientT | str,
        *,
        prefix: bytes | str = DEFAULT_PREFIX,
        connect_timeout: float | None = None,
        timeout: float | None = None,
        **client_options: Any,
    ) -> None:
        self.prefix = _as_bytes(prefix)
        if isinstance(client, str):
            self.client: ClientT = self._client_from_url(client, _url_options(connect_timeout, timeout, client_options))
            self._owns_client = True
        else:
            _check_client_args(connect_timeout, timeout, client_options)
            _warn_unbounded(client)
            self.client = client
            self._owns_client = False
        self._start()

    @staticmethod
    def _client_from_url(url: str, options: dict[str, Any]) -> ClientT:
        """The client for ``url``, redis-py's own retries off (a stalled Redis must fail fast)."""
        raise NotImplementedError

    def _start(self) -> None:
        """Set up the connection state of the kind of store."""
        raise NotImplementedError

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"{type(self).__name__}(prefix={self.prefix!r})"


class RedisReplayStore(_RedisStore[redis.Redis]):
    """A :class:`~dpop_middleware.ReplayStore` on a synchronous ``redis.Redis`` client.

    ``client`` is a URL (``redis://``, ``rediss://`` for TLS, ``unix://`` for a socket; credentials
    and database as redis-py reads them) or a ``redis.Redis`` you already have (its timeouts are
    then yours to set). ``prefix`` namespaces the keys so several apps can share one database.
    ``connect_timeout`` and ``timeout`` (seconds) bound each call for a client built from a URL;
    further keywords go to ``redis.Redis.from_url`` (e.g. ``max_connections``, ``ssl_ca_certs``).

    Safe for threads and for forked workers: each thread keeps one connection of its own, taken
    from the client's pool (so it carries the pool's TLS, credentials, database and timeouts) and
    renewed after a ``fork`` or an error. The command is written to and its one-line answer read
    from that connection's socket directly: the pool's per-command checkout and redis-py's reply
    parser cost more CPU per request than the rest of the store (``docs/performance-notes.md``).
    """

    @staticmethod
    def _client_from_url(url: str, options: dict[str, Any]) -> redis.Redis:
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis.from_url(url, **options)

    def _start(self) -> None:
        self._local = threading.local()

    def _socket(self) -> socket.socket:
        local = self._local
        sock: socket.socket | None = getattr(local, "sock", None)
        if sock is None or local.pid != os.getpid():
            pool = self.client.connection_pool
            connection = pool.get_connection()  # connected, handshake done (AUTH, SELECT, HELLO)
            sock = getattr(connection, "_sock", None)
            if not isinstance(sock, socket.socket):  # TLS sockets are socket.socket too
                pool.release(connection)
                # A redis-py whose connections keep their socket elsewhere: refuse rather than guess.
                raise ReplayStoreUnavailable(diagnostics={"store_error": "unsupported_redis_client"})
            local.connection, local.sock, local.pid = connection, sock, os.getpid()
        return sock

    def _discard(self) -> None:
        # After an error the connection's state is unknown: close it and give it back.
        local = self._local
        connection = getattr(local, "connection", None)
        local.connection = local.sock = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.disconnect()
                self.client.connection_pool.release(connection)

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """One ``SET NX PX``: ``True`` if ``key`` was new, ``False`` if it is already recorded."""
        command = _set_nx_command(self.prefix + key, _ttl_ms(ttl))
        try:
            sock = self._socket()
            sock.sendall(command)
            reply = chunk = sock.recv(MAX_REPLY)
            # One line is the whole answer; it comes in one segment but may, rarely, be split.
            while chunk and not reply.endswith(b"\r\n") and len(reply) <= MAX_REPLY:
                chunk = sock.recv(MAX_REPLY)
                reply += chunk
        except ReplayStoreUnavailable:
            raise
        except (RedisError, OSError) as exc:  # socket timeouts are OSErrors (TimeoutError)
            self._discard()
            raise _unavailable(exc) from exc
        if not chunk:  # closed by Redis (or in the middle of its answer)
            self._discard()
            raise _unavailable(ConnectionError("redis closed the connection"))
        outcome = set_nx_outcome(reply[:-2]) if reply.find(b"\r\n") == len(reply) - 2 else None
        if isinstance(outcome, bool):
            return outcome
        if outcome is None:  # more than one line, or none: the connection is out of step
            self._discard()
            raise unexpected_reply()
        raise outcome  # Redis refused the write; the connection is still in step

    def close(self) -> None:
        """Close the connection pool if this store created it (a client you passed stays yours)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = self._local.sock = None
            self.client.connection_pool.release(connection)
        if self._owns_client:
            self.client.close()


class AsyncRedisReplayStore(_RedisStore[redis.asyncio.Redis]):
    """An :class:`~dpop_middleware.AsyncReplayStore` on ``redis.asyncio``: the same contract.

    Arguments are those of :class:`RedisReplayStore`; a client passed in must be a
    ``redis.asyncio.Redis``. Use the store from one event loop (asyncio connections belong to the
    loop that made them): build it in the ASGI app factory or at import time of the app module.

    All requests of a loop share one pipelined connection (see
    :mod:`dpop_middleware.stores.redis_pipeline`), made by the client's pool so that it carries
    its TLS, credentials and database; the commands of one loop iteration leave in one write. The
    client's ``socket_timeout`` bounds each command (``timeout`` for a client built from a URL);
    if Redis has not answered by then, every command waiting on the connection fails with 503 and
    the next request reconnects.
    """

    @staticmethod
    def _client_from_url(url: str, options: dict[str, Any]) -> redis.asyncio.Redis:
        options.setdefault("retry", redis.asyncio.retry.Retry(NoBackoff(), 0))
        return redis.asyncio.Redis.from_url(url, **options)

    def _start(self) -> None:
        timeout_setting = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        self._timeout: float | None = float(timeout_setting) if timeout_setting else None
        self._pipeline: RedisPipeline | None = None
        self._opening: asyncio.Task[RedisPipeline] | None = None

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """One ``SET NX PX``: ``True`` if ``key`` was new, ``False`` if it is already recorded."""
        command = _set_nx_command(self.prefix + key, _ttl_ms(ttl))
        pipeline = self._pipeline
        try:
            if pipeline is None or pipeline.closed or pipeline.loop is not asyncio.get_running_loop():
                pipeline = await self._open()
            return await pipeline.send(command)
        except ReplayStoreUnavailable:
            raise
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def _open(self) -> RedisPipeline:
        # The first request to find no connection starts one; those arriving meanwhile wait for it.
        loop = asyncio.get_running_loop()
        opening = self._opening
        if opening is None or opening.get_loop() is not loop:
            opening = self._opening = loop.create_task(self._connect())
            # Retrieved here, so that a failure every waiter gave up on is not logged as unhandled.
            opening.add_done_callback(lambda task: task.cancelled() or task.exception())
        # Shielded: a request that is cancelled while waiting must not cancel everyone's connect.
        return await asyncio.shield(opening)

    async def _connect(self) -> RedisPipeline:
        try:
            # redis-py bounds the connect and the handshake with the client's own timeouts.
            connection = self.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.connect()
                self._pipeline = RedisPipeline.take_over(connection, self._timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
                raise
            return self._pipeline
        finally:
            self._opening = None

    async def aclose(self) -> None:
        """Close this store's connection, and the client's pool if this store created it."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()
        if self._owns_client:
            await self.client.aclose()
