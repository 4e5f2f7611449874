"""Replay stores on Redis (or Valkey), shared by every worker and host: sync and asyncio.

Each request costs exactly one command, ``SET <prefix><key> 1 NX PX <ttl_ms>``, sent with
redis-py's public API (``set(name, 1, nx=True, px=ttl_ms)``): the check and the write are one atomic
step on the server, so two workers racing with the same proof cannot both win (a ``GET`` then
``SET`` would let both through). Keys expire by themselves; nothing else is ever sent.

Fail closed: any Redis error, refused connection or timeout raises
:class:`~dpop_middleware.ReplayStoreUnavailable`, which the verifier answers with 503 and
``Retry-After``. Timeouts are bounded and redis-py's own retries are switched off for clients we
build, so a stalled Redis costs a request at most ``connect_timeout + timeout`` seconds (twice that
for an asyncio request queued behind the command in flight), not the library's default minute of
backed-off retries.

The client is any redis-py client: ``redis.Redis``, ``redis.RedisCluster``, a Sentinel's
``master_for(...)``, or their ``redis.asyncio`` twins; or a URL (see
:mod:`dpop_middleware.stores.redis_urls` for the Sentinel and Cluster forms). redis-py uses
``hiredis`` to parse replies when it is installed. Install with ``pip install 'dpop-middleware[redis]'``::

    store = RedisReplayStore("redis://redis.internal:6379/0")                 # WSGI / sync code
    astore = AsyncRedisReplayStore("redis+sentinel://s1:26379,s2:26379/api")  # ASGI / asyncio code
    verifier = DPoPVerifier(validator, replay_store=store)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from typing import Any

try:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.retry
    import redis.asyncio.sentinel
    import redis.cluster
    import redis.sentinel
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError, ResponseError
    from redis.retry import Retry
except ModuleNotFoundError as exc:  # name the extra to install
    from ..extras import missing_extra

    missing_extra(exc, "redis", "the Redis replay stores need redis-py", "redis")

from ..core.errors import ReplayStoreUnavailable
from .redis_urls import RedisURL, parse_redis_url

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


def _unavailable(exc: BaseException) -> ReplayStoreUnavailable:
    # Only the class name (and a Redis error's code) goes to the logs: redis-py messages can carry
    # host names and URLs.
    if isinstance(exc, ResponseError):  # Redis refused (out of memory, read-only replica...)
        # A plain ResponseError's text starts with Redis's code ("OOM command not allowed..."): keep
        # the code only. Subclasses (OutOfMemoryError, ReadOnlyError) name it themselves.
        code = str(exc).split(" ", 1)[0][:32] if type(exc) is ResponseError else type(exc).__name__
        return ReplayStoreUnavailable(diagnostics={"store_error": "ResponseError", "redis_error": code})
    diagnostics = {"store_error": type(exc).__name__}
    return ReplayStoreUnavailable(diagnostics=diagnostics)


def _set_nx_outcome(reply: object) -> bool:
    # redis-py answers SET with True (written) or None (NX: already there); anything else is no
    # answer to our command, so fail closed rather than guess.
    if reply is True or reply is None:
        return reply is True
    raise ReplayStoreUnavailable(diagnostics={"store_error": "unexpected_reply"})


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


def _check_wait(wait_replicas: int, wait_timeout_ms: int) -> None:
    if not isinstance(wait_replicas, int) or wait_replicas < 0:
        raise ValueError("wait_replicas must be a whole number, 0 (off) or more")
    if wait_replicas and (not isinstance(wait_timeout_ms, int) or wait_timeout_ms <= 0):
        raise ValueError("wait_timeout_ms must be a positive whole number of milliseconds")


def _is_asyncio_client(client: object) -> bool:
    return type(client).__module__.startswith("redis.asyncio")


def _is_cluster(client: object) -> bool:
    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


class _RedisStore:
    """What both stores share: the key prefix, the ``WAIT`` option and the URL or client given."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: bytes | str = DEFAULT_PREFIX,
        connect_timeout: float | None = None,
        timeout: float | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        **client_options: Any,
    ) -> None:
        self.prefix = _as_bytes(prefix)
        _check_wait(wait_replicas, wait_timeout_ms)
        self.wait_replicas, self.wait_timeout_ms = wait_replicas, wait_timeout_ms
        self._target: RedisURL | None = None
        self._options: dict[str, Any] = {}
        if isinstance(client, str):
            self._target = parse_redis_url(client)
            self._options = _url_options(connect_timeout, timeout, client_options)
            self._owns_client = True
        else:
            if connect_timeout is not None or timeout is not None or client_options:
                raise TypeError("timeouts and client options apply to a URL; configure your own client directly")
            _warn_unbounded(client)
            self._owns_client = False
        if wait_replicas and (_is_cluster(client) or (self._target is not None and self._target.kind == "cluster")):
            # WAIT must reach the shard that took the write; a cluster client cannot promise that.
            raise ValueError("wait_replicas is not supported with Redis Cluster; use a Sentinel or direct client")

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"{type(self).__name__}(prefix={self.prefix!r})"

    def _waited_outcome(self, replies: list[Any]) -> bool:
        """The ``SET`` reply, once ``WAIT`` says enough replicas hold it (else fail closed)."""
        written, acknowledged = replies
        if not _set_nx_outcome(written):
            return False
        if not isinstance(acknowledged, int) or acknowledged < self.wait_replicas:
            raise ReplayStoreUnavailable(diagnostics={"store_error": "replica_not_acknowledged"})
        return True


class RedisReplayStore(_RedisStore):
    """A :class:`~dpop_middleware.ReplayStore` on a synchronous redis-py client.

    ``client`` is a URL (``redis://``, ``rediss://`` for TLS, ``unix://`` for a socket,
    ``redis+sentinel://`` or ``redis+cluster://``) or a client you already have: ``redis.Redis``,
    ``redis.RedisCluster`` or a ``Sentinel(...).master_for(...)`` (its timeouts and retries are
    then yours to set). ``prefix`` namespaces the keys so several apps can share one database.
    ``connect_timeout`` and ``timeout`` (seconds) bound each call for a client built from a URL;
    further keywords go to the redis-py client (e.g. ``ssl_ca_certs``).

    ``wait_replicas`` > 0 follows each write with ``WAIT wait_replicas wait_timeout_ms`` in the same
    round trip: a request is accepted only once that many replicas hold its entry, and answered 503
    when they do not acknowledge in time (``docs/operations.md``: the failover window).

    For a ``redis://`` URL each thread keeps one connection of its own (a single-connection client
    on the shared pool, renewed after a ``fork``), so no request pays for a pool checkout.
    """

    def __init__(self, client: Any, **options: Any) -> None:
        if _is_asyncio_client(client):
            raise TypeError("RedisReplayStore needs a synchronous redis-py client; use AsyncRedisReplayStore")
        super().__init__(client, **options)
        self._local = threading.local()
        target = self._target
        if target is None:
            self.client: Any = client
        elif target.kind == "direct":
            self._options.setdefault("retry", Retry(NoBackoff(), 0))
            self.client = redis.Redis.from_url(target.url, **self._options)
        elif target.kind == "sentinel":
            self.client = _sentinel(redis.sentinel.Sentinel, target, self._options, Retry(NoBackoff(), 0))
        else:
            self._options.setdefault("retry", Retry(NoBackoff(), 0))
            nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
            self.client = redis.cluster.RedisCluster(
                startup_nodes=nodes, username=target.username, password=target.password, **self._options
            )
        self._per_thread = target is not None and target.kind == "direct"

    def _thread_client(self) -> Any:
        if not self._per_thread:
            return self.client
        local = self._local
        client = getattr(local, "client", None)
        if client is None or local.pid != os.getpid():
            # A fork child must not share its parent's socket: it gets its own connection.
            client = redis.Redis(connection_pool=self.client.connection_pool, single_connection_client=True)
            local.client, local.pid = client, os.getpid()
        return client

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """One ``SET NX PX``: ``True`` if ``key`` was new, ``False`` if it is already recorded."""
        name, ttl_ms = self.prefix + key, _ttl_ms(ttl)
        try:
            if not self.wait_replicas:
                return _set_nx_outcome(self._thread_client().set(name, b"1", nx=True, px=ttl_ms))
            pipe = self.client.pipeline(transaction=False)  # SET then WAIT: one round trip for both
            pipe.set(name, b"1", nx=True, px=ttl_ms)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            replies = pipe.execute()
        except (RedisError, OSError) as exc:  # socket timeouts are OSErrors (TimeoutError)
            raise _unavailable(exc) from exc
        return self._waited_outcome(replies)

    def close(self) -> None:
        """Close this thread's connection, and the client if this store created it."""
        client = getattr(self._local, "client", None)
        if client is not None:
            self._local.client = None
            client.close()
        if self._owns_client:
            self.client.close()


def _sentinel(factory: Any, target: RedisURL, options: dict[str, Any], retry: Any) -> Any:
    """The master client of a Sentinel URL: sentinels and master share the timeouts; retries off."""
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = factory(list(target.nodes), sentinel_kwargs=dict(timeouts), **options)
    return sentinel.master_for(
        target.service, db=target.db, username=target.username, password=target.password, retry=retry
    )


class _Batch:
    """The ``SET``s of one event loop, sent together: while one pipeline is in flight, the next gathers.

    An asyncio server under load has several requests waiting on the store at once, and redis-py's
    asyncio client spends about twice the sync client's CPU on each command; one pipeline for all
    of them costs a fraction of a command each (figures: docs/performance-notes.md). A request that
    finds nothing in flight sends its own command at once; the ones that arrive meanwhile go
    together in the next pipeline, from a task of their own so that no request's cancellation can
    cut another's short. Each request is still one ``SET NX PX``, and a pipeline is one round trip.
    """

    __slots__ = ("busy", "client", "loop", "queue", "sender", "store")

    def __init__(self, store: AsyncRedisReplayStore, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.client, self.loop = store, client, loop
        self.queue: list[tuple[bytes, int, asyncio.Future[bool]]] = []
        self.busy = False
        self.sender: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    async def set_nx(self, name: bytes, ttl_ms: int) -> bool:
        if self.busy:
            future: asyncio.Future[bool] = self.loop.create_future()
            self.queue.append((name, ttl_ms, future))
            return await future
        self.busy = True
        try:
            if self.store.wait_replicas:
                return await self._send_one(name, ttl_ms)
            try:
                reply = await self.client.set(name, b"1", nx=True, px=ttl_ms)
            except Exception as exc:  # as in _send: all fail closed
                raise _unavailable(exc) from exc
            return _set_nx_outcome(reply)
        finally:
            self._hand_on()

    async def _send_one(self, name: bytes, ttl_ms: int) -> bool:
        future: asyncio.Future[bool] = self.loop.create_future()
        try:
            await self._send([(name, ttl_ms, future)])
        except BaseException:  # cancelled: nobody will read this request's answer
            if not future.cancelled():
                future.exception()  # mark it read, so asyncio does not log it as lost
            raise
        return future.result()

    def _hand_on(self) -> None:
        """After a command: start a sender for what queued meanwhile, or go idle."""
        self.queue = [entry for entry in self.queue if not entry[2].done()]  # drop cancelled requests
        if not self.queue:
            self.busy = False
            return
        sender = self.sender = self.loop.create_task(self._send_all())
        # A callback, not a ``finally``: it runs even if the task is cancelled before it starts.
        sender.add_done_callback(self._sender_done)

    async def _send_all(self) -> None:
        while self.queue:
            batch, self.queue = self.queue, []
            await self._send([entry for entry in batch if not entry[2].done()])
        # Idle again now, not in the done callback: that runs a loop step later, and a request
        # queued in between would wait for a sender that is gone.
        self.busy, self.sender = False, None

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task is not self.sender:  # it emptied the queue and went idle itself
            return
        # Cancelled (maybe before its first step) or failed: nobody may wait forever.
        if not task.cancelled() and task.exception() is not None:  # _send fails requests, never raises
            logger.error("dpop replay store: the Redis sender failed", exc_info=task.exception())
        self.busy, self.sender = False, None
        for _, _, future in self.queue:
            _fail(future, ReplayStoreUnavailable(diagnostics={"store_error": "cancelled"}))
        self.queue = []

    async def _send(self, batch: list[tuple[bytes, int, asyncio.Future[bool]]]) -> None:
        if not batch:
            return
        store = self.store
        try:
            pipe = self.client.pipeline(transaction=False)
            for name, ttl_ms, _ in batch:
                pipe.set(name, b"1", nx=True, px=ttl_ms)
            if store.wait_replicas:  # one WAIT covers every write before it on the connection
                pipe.execute_command("WAIT", store.wait_replicas, store.wait_timeout_ms)
            sent = len(pipe)
            replies = await pipe.execute(raise_on_error=False)
            if not isinstance(replies, list) or len(replies) != sent:
                raise _UnexpectedReplies
            acknowledged = replies[-1] if store.wait_replicas else None
            for (_, _, future), reply in zip(batch, replies, strict=False):  # WAIT's reply is the extra one
                if not future.done():  # else its request was cancelled
                    _settle(future, store, reply, acknowledged)
        except _UnexpectedReplies:
            for _, _, future in batch:
                _fail(future, ReplayStoreUnavailable(diagnostics={"store_error": "unexpected_reply"}))
        except Exception as exc:  # noqa: BLE001 - RedisError, OSError, timeouts, or a bug: all fail closed
            for _, _, future in batch:
                _fail(future, _unavailable(exc))
        finally:  # cancelled: fail closed, never leave a request waiting
            for _, _, future in batch:
                _fail(future, ReplayStoreUnavailable(diagnostics={"store_error": "cancelled"}))


def _settle(future: asyncio.Future[bool], store: _RedisStore, reply: object, acknowledged: object) -> None:
    try:
        if isinstance(reply, BaseException):  # Redis refused this command (OOM, read-only replica...)
            raise _unavailable(reply)
        outcome = store._waited_outcome([reply, acknowledged]) if store.wait_replicas else _set_nx_outcome(reply)
    except ReplayStoreUnavailable as exc:
        future.set_exception(exc)
    else:
        future.set_result(outcome)


class _UnexpectedReplies(Exception):
    """The pipeline answered with another number of replies than it was sent commands."""


def _fail(future: asyncio.Future[bool], exc: ReplayStoreUnavailable) -> None:
    if not future.done():
        future.set_exception(exc)


class AsyncRedisReplayStore(_RedisStore):
    """An :class:`~dpop_middleware.AsyncReplayStore` on ``redis.asyncio``: the same contract.

    Arguments are those of :class:`RedisReplayStore`; a client passed in must be one of the
    ``redis.asyncio`` clients (``Redis``, ``RedisCluster``, ``Sentinel(...).master_for(...)``).
    asyncio connections belong to the loop that made them: a client passed in must be used from
    one loop; for a URL the store builds one client per event loop, on first use in that loop.

    Requests of one loop that reach the store while a command is in flight are sent together in
    the next pipeline (one ``SET`` each, one round trip for all), so a loop needs one connection.
    """

    def __init__(self, client: Any, **options: Any) -> None:
        if not isinstance(client, str) and not _is_asyncio_client(client):
            raise TypeError("AsyncRedisReplayStore needs a redis.asyncio client; use RedisReplayStore")
        super().__init__(client, **options)
        self.client: Any = client if self._target is None else None
        self._batch: _Batch | None = None

    def _build(self) -> Any:
        target = self._target
        assert target is not None
        options = dict(self._options)
        retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if target.kind == "direct":
            # A pool, not a single-connection client (whose pipelines would take a second
            # connection): with one command or pipeline in flight at a time it holds one connection.
            options.setdefault("retry", retry)
            return redis.asyncio.Redis.from_url(target.url, **options)
        if target.kind == "sentinel":
            return _sentinel(redis.asyncio.sentinel.Sentinel, target, options, retry)
        options.setdefault("retry", retry)
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes]
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=nodes, username=target.username, password=target.password, **options
        )

    def _loop_batch(self) -> _Batch:
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None or batch.loop is not loop:
            # A client we built for an earlier loop is left to the garbage collector: its
            # connections cannot be closed from this loop.
            if self._target is not None:
                self.client = self._build()
            batch = self._batch = _Batch(self, self.client, loop)
        return batch

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """One ``SET NX PX``: ``True`` if ``key`` was new, ``False`` if it is already recorded."""
        name, ttl_ms = self.prefix + key, _ttl_ms(ttl)
        try:
            batch = self._loop_batch()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return await batch.set_nx(name, ttl_ms)

    async def aclose(self) -> None:
        """Close the client if this store created it (a client you passed stays yours)."""
        client, self.client = self.client, None if self._owns_client else self.client
        self._batch = None
        if self._owns_client and client is not None:
            await client.aclose()
