"""One pipelined Redis connection per event loop, for the asyncio replay store.

Every ``SET NX PX`` a worker sends goes over one connection. The commands that requests issue in
the same event-loop iteration leave in one write, and Redis answers in order, so each reply line
settles the oldest waiting request. Measured against one redis-py connection per concurrent request
(a ``StreamReader``, a parser and a socket each), this halves the store's CPU per request under
concurrency (``docs/performance-notes.md``) and wakes the loop once for a whole batch of replies
instead of once per socket.

The connection is made, authenticated and set up by redis-py (its URL forms, TLS, credentials,
``SELECT``, RESP3); then this protocol takes over its transport, since after the handshake the only
traffic is ours. Replies are single lines (``+OK``, ``$-1`` or RESP3 ``_``, ``-ERR ...``): anything
else means the connection is out of step, so every waiting request fails closed and the connection
is dropped. One timer bounds the oldest waiting request; if Redis has not answered it by its
deadline, Redis is stalled and every waiting request fails at once.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable
from typing import Any

from ..core.errors import ReplayStoreUnavailable
from .redis_replies import MAX_REPLY, set_nx_outcome, unexpected_reply

__all__ = ["RedisPipeline"]


def _timed_out() -> Exception:
    return TimeoutError("redis did not answer in time")


def _lost() -> Exception:
    return ConnectionError("redis connection lost")


def _closed() -> Exception:
    return ConnectionError("redis replay store closed")


class RedisPipeline(asyncio.Protocol):
    """A taken-over Redis connection: :meth:`send` a packed ``SET NX``, await ``True``/``False``.

    Failures are set on the waiting futures as the exception to report: ``TimeoutError`` (no reply
    within ``timeout`` seconds), ``ConnectionError`` (connection lost or closed) or
    :class:`ReplayStoreUnavailable` (a reply that is not a ``SET NX`` answer).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        timeout: float | None,
        connection: object = None,
    ) -> None:
        self.loop = loop
        self.closed = False
        self._transport = transport
        self._timeout = timeout
        self._waiting: collections.deque[tuple[asyncio.Future[bool], float]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None
        # The redis-py connection whose transport this is, kept for as long as the pipeline lives:
        # its StreamWriter closes the transport when it is garbage-collected (asyncio does that
        # since 3.11), which would cut us off at a random time.
        self._connection = connection

    @classmethod
    def take_over(cls, connection: Any, timeout: float | None) -> RedisPipeline:
        """Move a connected ``redis.asyncio.Connection`` (handshake done) onto a new pipeline."""
        transport: Any = getattr(getattr(connection, "_writer", None), "transport", None)
        if not (hasattr(transport, "set_protocol") and hasattr(transport, "write")):  # uvloop's are duck-typed
            # A redis-py whose connections no longer keep their stream where we look: refuse
            # (503) rather than guess, and say why in the logs.
            raise ReplayStoreUnavailable(diagnostics={"store_error": "unsupported_redis_client"})
        pipeline = cls(asyncio.get_running_loop(), transport, timeout, connection)
        transport.set_protocol(pipeline)
        return pipeline

    def send(self, command: bytes) -> asyncio.Future[bool]:
        """Queue ``command`` for this iteration's write; the future settles with its reply."""
        if self.closed:
            raise _lost()
        loop = self.loop
        future: asyncio.Future[bool] = loop.create_future()
        deadline = math.inf
        if self._timeout is not None:
            deadline = loop.time() + self._timeout
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._check_deadline)
        self._waiting.append((future, deadline))
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(command)
        return future

    def close(self) -> None:
        """Fail whatever is still waiting and close the connection."""
        self._fail(_closed, abort=False)

    # -- protocol callbacks ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        waiting = self._waiting
        start = 0
        while (end := buffer.find(b"\r\n", start)) >= 0:
            reply = buffer[start:end]
            start = end + 2
            if not waiting:
                self._fail(unexpected_reply)
                return
            future = waiting.popleft()[0]
            outcome = set_nx_outcome(reply)
            if outcome is None:  # not a SET NX answer: every later reply would go to the wrong request
                waiting.appendleft((future, 0.0))
                self._fail(unexpected_reply)
                return
            if future.done():  # its request was cancelled (client gone): the reply is simply consumed
                continue
            if isinstance(outcome, bool):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_REPLY:
            self._fail(unexpected_reply)

    def eof_received(self) -> bool:
        self._fail(_lost)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_lost)

    # -- internals -------------------------------------------------------------------------------

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if not self.closed:
            self._transport.write(b"".join(outgoing))

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        head_deadline = self._waiting[0][1]
        if head_deadline <= self.loop.time():
            self._fail(_timed_out)
        else:
            self._timer = self.loop.call_at(head_deadline, self._check_deadline)

    def _fail(self, error: Callable[[], Exception], *, abort: bool = True) -> None:
        # ``error`` builds one exception per waiting request: an instance raised in several tasks
        # would collect all of their tracebacks.
        if not self.closed:
            self.closed = True
            if abort:
                self._transport.abort()
            else:
                self._transport.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, collections.deque()
        self._outgoing = []
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error())
