"""Replay stores on Redis (or Valkey), shared by every worker and host: sync and asyncio.

Each request costs exactly one command, ``SET <prefix><key> 1 NX PX <ttl_ms>``, sent with
redis-py's public API (the sync store: ``set(name, 1, nx=True, px=ttl_ms)``; the asyncio store:
``send_packed_command`` and ``read_response`` on a connection it holds from the client's pool, which
redis-py's own pipelines use): the check and the write are one atomic step on the server, so two
workers racing with the same proof cannot both win (a ``GET`` then ``SET`` would let both through).
Keys expire by themselves; nothing else is ever sent.

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
import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterable
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

Command = tuple[Any, ...]


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
    # SET answers OK (written; redis-py's client turns it into True) or nil (NX: already there);
    # anything else is no answer to our command, so fail closed rather than guess.
    if reply is None:
        return False
    if reply is True or reply in (b"OK", "OK"):  # a tuple: an unhashable reply must not raise
        return True
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

    def _commands(self, entries: Iterable[tuple[bytes, int]]) -> list[Command]:
        """A ``SET NX PX`` per ``(name, ttl_ms)``, then one ``WAIT`` if replicas must acknowledge:
        what both stores send, in one round trip."""
        commands: list[Command] = [("SET", name, b"1", "NX", "PX", ttl_ms) for name, ttl_ms in entries]
        if self.wait_replicas:  # one WAIT covers every write before it on the connection
            commands.append(("WAIT", self.wait_replicas, self.wait_timeout_ms))
        return commands

    def _outcomes(self, replies: object, count: int) -> list[bool | ReplayStoreUnavailable]:
        """Each of ``count`` entries' answer from the replies to :meth:`_commands`, or why it has
        none: a refused command, too few replicas, or replies that answer something else."""
        if not isinstance(replies, list) or len(replies) != count + (1 if self.wait_replicas else 0):
            raise ReplayStoreUnavailable(diagnostics={"store_error": "unexpected_reply"})
        acknowledged = replies[-1] if self.wait_replicas else None
        return [self._outcome(reply, acknowledged) for reply in replies[:count]]

    def _outcome(self, reply: object, acknowledged: object) -> bool | ReplayStoreUnavailable:
        if isinstance(reply, BaseException):  # Redis refused this command (OOM, read-only replica...)
            return _unavailable(reply)
        try:
            written = _set_nx_outcome(reply)
        except ReplayStoreUnavailable as exc:
            return exc
        if written and self.wait_replicas and (not isinstance(acknowledged, int) or acknowledged < self.wait_replicas):
            # Written, but not yet on enough replicas: a failover could lose it (fail closed).
            return ReplayStoreUnavailable(diagnostics={"store_error": "replica_not_acknowledged"})
        return written


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
            for command in self._commands([(name, ttl_ms)]):
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:  # socket timeouts are OSErrors (TimeoutError)
            raise _unavailable(exc) from exc
        (outcome,) = self._outcomes(replies, 1)
        if isinstance(outcome, ReplayStoreUnavailable):
            raise outcome
        return outcome

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


class _HeldConnection:
    """One connection of a client's pool, held by one event loop: a command costs no pool checkout.

    redis-py's asyncio client pays for a checkout (a lock, connection-state checks, its metrics
    hooks) on every command and pipeline; holding the connection leaves the public
    ``send_packed_command`` / ``read_response`` pair: redis-py still packs every command and parses
    every reply (docs/performance-notes.md: what it saves). A direct client and a Sentinel's
    ``master_for(...)`` (whose pool finds the master on each reconnect) both work this way.
    """

    __slots__ = ("busy", "client", "closed", "conn", "hand_back")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.conn: Any = None
        self.busy = self.closed = self.hand_back = False

    async def round_trip(self, commands: list[Command]) -> list[object]:
        """Send ``commands`` at once and read their replies: a command Redis refused is its error."""
        if self.closed:  # never take a connection from the pool again: nobody would give it back
            raise redis.exceptions.ConnectionError("the replay store was closed")
        cancels = _cancel_requests()
        self.busy = True
        try:
            conn = self.conn
            if conn is None:
                conn = self.conn = await self.client.connection_pool.get_connection()
            elif conn.is_connected and await self._stale(conn):
                await conn.disconnect(nowait=True)  # reconnected by the send below
            try:
                await conn.send_packed_command(conn.pack_commands(commands))
                if _cancel_requests() > cancels:  # swallowed by 3.11's wait_for: read nothing more
                    raise asyncio.CancelledError
                replies: list[object] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:  # this command's error reply: the connection is in step
                        replies.append(exc)
            except BaseException:
                # Out of step (a timeout, a cancellation between two replies): a reply left unread
                # must never be taken for the answer to a later command.
                await conn.disconnect(nowait=True)
                raise
        finally:
            self.busy = False
            if self.closed:  # closed meanwhile (maybe while connecting): the exchange is over now
                await self._let_go()
        return replies

    @staticmethod
    async def _stale(conn: Any) -> bool:
        # Closed by the server while idle (a restart, its idle timeout), or holding bytes nobody
        # asked for: the check redis-py's pool makes on each connection it hands out.
        try:
            return bool(await conn.can_read())
        except (RedisError, OSError):
            return True

    async def close(self, *, hand_back: bool) -> None:
        """No more round trips; once none is in flight, the connection goes back to the pool
        (``hand_back``: the client is someone else's) or is closed."""
        self.closed, self.hand_back = True, hand_back
        if not self.busy:  # else when the exchange in flight is over
            await self._let_go()

    async def _let_go(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self.hand_back:
            await self.client.connection_pool.release(conn)
        else:  # our own client, closed or about to be: never leave a socket open behind it
            await conn.disconnect(nowait=True)

    async def reclaim(self) -> None:
        """Give a connection of an event loop that has ended back to the client's pool, unconnected.

        Its socket belongs to the ended loop, which can no longer close it (the collector will);
        what must not happen is the pool counting it as checked out forever, one per ended loop.
        """
        self.closed = True
        conn, self.conn = self.conn, None
        if conn is None:
            return
        with contextlib.suppress(RuntimeError):  # "Event loop is closed", from the ended loop's transport
            await conn.disconnect(nowait=True)
        await self.client.connection_pool.release(conn)  # reconnected on this loop when next taken


class _ClusterCommands:
    """A Redis Cluster client: it routes each key to its shard, so its own commands are used."""

    __slots__ = ("client", "closed")

    def __init__(self, client: Any) -> None:
        self.client, self.closed = client, False

    async def round_trip(self, commands: list[Command]) -> list[object]:
        if self.closed:  # as for a held connection: nothing reopens a closed store's client
            raise redis.exceptions.ConnectionError("the replay store was closed")
        if len(commands) == 1:
            try:
                return [await self.client.execute_command(*commands[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = await pipe.execute(raise_on_error=False)
        return list(replies) if isinstance(replies, list) else []

    async def close(self, *, hand_back: bool) -> None:
        self.closed = True  # its connections are the client's own: nothing to hand back

    async def reclaim(self) -> None:
        self.closed = True


class _Batch:
    """The ``SET``s of one event loop, sent together: while one round trip is in flight, the next gathers.

    An asyncio server under load has several requests waiting on the store at once, and each round
    trip costs an asyncio server far more CPU than the command itself; one write for all of them
    costs a fraction of a round trip each (figures: docs/performance-notes.md). A request that
    finds nothing in flight sends its own command at once; the ones that arrive meanwhile go
    together in the next write, from a task of their own so that no request's cancellation can cut
    another's short. Each request is still one ``SET NX PX``.
    """

    __slots__ = ("busy", "client", "lane", "loop", "queue", "sender", "store")

    def __init__(self, store: AsyncRedisReplayStore, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.client, self.loop = store, client, loop
        self.lane: _HeldConnection | _ClusterCommands = (
            _ClusterCommands(client) if _is_cluster(client) else _HeldConnection(client)
        )
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
            (outcome,) = await self._answers([(name, ttl_ms)])
        finally:
            self._hand_on()
        if isinstance(outcome, ReplayStoreUnavailable):
            raise outcome
        return outcome

    async def _answers(self, entries: list[tuple[bytes, int]]) -> list[bool | ReplayStoreUnavailable]:
        """One round trip for ``entries``: each one's answer, or why it has none (fail closed)."""
        commands = self.store._commands(entries)
        cancels = _cancel_requests()
        try:
            replies = await self.lane.round_trip(commands)
        except Exception as exc:  # RedisError, OSError, timeouts, or a bug: all fail closed
            if _cancel_requests() > cancels:
                raise asyncio.CancelledError from None  # see below
            raise _unavailable(exc) from exc
        if _cancel_requests() > cancels:
            # Cancelled, yet answered: CPython 3.11's ``wait_for`` (inside redis-py's write) can
            # swallow a cancellation that lands in the same step. Honour it, as 3.12 does.
            raise asyncio.CancelledError
        return self.store._outcomes(replies, len(entries))

    def _hand_on(self) -> None:
        """After a round trip: start a sender for what queued meanwhile, or go idle."""
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
        try:
            outcomes = await self._answers([(name, ttl_ms) for name, ttl_ms, _ in batch])
        except ReplayStoreUnavailable as exc:
            for _, _, future in batch:  # an exception each: one raised in several tasks would tangle
                _fail(future, ReplayStoreUnavailable(diagnostics=dict(exc.diagnostics)))
        except Exception as exc:  # noqa: BLE001 - a bug: still fail closed
            for _, _, future in batch:
                _fail(future, _unavailable(exc))
        else:
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its request was cancelled
                    continue
                if isinstance(outcome, ReplayStoreUnavailable):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:  # cancelled: fail closed, never leave a request waiting
            for _, _, future in batch:
                _fail(future, ReplayStoreUnavailable(diagnostics={"store_error": "cancelled"}))

    async def close(self, *, hand_back: bool) -> None:
        """Refuse further round trips (503); ``hand_back``: return the held connection to the pool."""
        await self.lane.close(hand_back=hand_back)


def _cancel_requests() -> int:
    """How many cancellations the current task has been asked for and not yet taken back."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)  # Python 3.11+
    return int(cancelling()) if cancelling is not None else 0


def _fail(future: asyncio.Future[bool], exc: ReplayStoreUnavailable) -> None:
    if not future.done():
        future.set_exception(exc)


class AsyncRedisReplayStore(_RedisStore):
    """An :class:`~dpop_middleware.AsyncReplayStore` on ``redis.asyncio``: the same contract.

    Arguments are those of :class:`RedisReplayStore`; a client passed in must be one of the
    ``redis.asyncio`` clients (``Redis``, ``RedisCluster``, ``Sentinel(...).master_for(...)``).
    asyncio connections belong to the loop that made them: for a URL the store builds one client
    per event loop, on first use in that loop; a client passed in may serve loops one after another
    (e.g. one per test), each ended loop's connection going back to its pool.

    Each loop holds one connection of the client's pool (a Redis Cluster client routes each key
    itself): requests of one loop that reach the store while a command is in flight are written
    together next (one ``SET`` each, one round trip for all).
    """

    def __init__(self, client: Any, **options: Any) -> None:
        if not isinstance(client, str) and not _is_asyncio_client(client):
            raise TypeError("AsyncRedisReplayStore needs a redis.asyncio client; use RedisReplayStore")
        super().__init__(client, **options)
        self.client: Any = client if self._target is None else None
        self._batch: _Batch | None = None  # the loop served last: the one to look at first
        self._batches: dict[asyncio.AbstractEventLoop, _Batch] = {}
        self._batches_lock = threading.Lock()  # loops in several threads may share one store
        self._ended: list[_Batch] = []  # of ended loops, holding connections of a client passed in

    def _build(self) -> Any:
        target = self._target
        assert target is not None
        options = dict(self._options)
        retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if target.kind == "direct":
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
        if batch is not None and batch.loop is loop:
            return batch
        with self._batches_lock:
            batch = self._batches.get(loop)
            if batch is None:
                # Loops that ended take their batches with them (their sockets cannot be closed
                # from here: the collector has them). Not a weak mapping: a batch's connection
                # holds its loop, so the loop would never go. A client passed in outlives its
                # loops: its pool gets the ended loops' connections back (add_if_absent).
                for ended in [other for other in self._batches if other.is_closed()]:
                    gone = self._batches.pop(ended)
                    if not self._owns_client:
                        self._ended.append(gone)
                # For a URL, each loop gets a client of its own: asyncio connections belong to
                # the loop that made them.
                client = self._build() if self._target is not None else self.client
                batch = self._batches[loop] = _Batch(self, client, loop)
            self._batch = batch
            if self._target is not None:
                self.client = batch.client
        return batch

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """One ``SET NX PX``: ``True`` if ``key`` was new, ``False`` if it is already recorded."""
        name, ttl_ms = self.prefix + key, _ttl_ms(ttl)
        try:
            batch = self._loop_batch()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        if self._ended:  # only after a switch of event loops
            await self._reclaim()
        return await batch.set_nx(name, ttl_ms)

    async def _reclaim(self) -> None:
        with self._batches_lock:
            ended, self._ended = self._ended, []
        for batch in ended:
            try:
                await batch.lane.reclaim()
            except Exception as exc:  # noqa: BLE001 - housekeeping: never this request's answer
                name = exc.__class__.__name__
                logger.warning("dpop replay store: an ended event loop's connection was not returned: %s", name)

    async def aclose(self) -> None:
        """Close this event loop's client if this store created it (a client you passed stays yours).

        Requests still queued get 503; a later request starts afresh. Your client gets its
        connection back once no round trip is using it (handing it over mid-reply would give the
        next user our reply). Clients of other loops are theirs to close: their sockets cannot be
        closed from this loop.
        """
        loop = asyncio.get_running_loop()
        with self._batches_lock:
            batch = self._batches.pop(loop, None)
            if self._batch is batch:
                self._batch = None
        if batch is None:
            return
        await batch.close(hand_back=not self._owns_client)
        if self._owns_client:
            if self.client is batch.client:
                self.client = None
            await batch.client.aclose()  # a command in flight fails closed: the sockets go
