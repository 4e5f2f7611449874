"""The opt-in switch to *fail open* when the replay store cannot answer.

By default a store outage refuses every DPoP request with 503: nothing is accepted that replay
protection has not checked. Some operators prefer availability: during an outage they would rather
accept proofs unchecked for replay (every other check still runs: signature, ``htm``/``htu``,
``iat`` window, token binding), knowing that a proof captured in that window could be replayed
within its ``max_age``. Wrapping the store says so explicitly::

    store = FailOpenReplayStore(RedisReplayStore(url))          # sync
    astore = AsyncFailOpenReplayStore(AsyncRedisReplayStore(url))  # asyncio

The choice is logged at ERROR when the wrapper is built and again for **every** request let
through, with ``dpop_reason="replay_store_unavailable"`` and ``dpop_outcome="fail_open"``, so it
cannot go unnoticed. ``on_fail_open`` (e.g. :meth:`~dpop_middleware.metrics.PrometheusMetrics.fail_open`)
counts them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..core.errors import DPoPError
from ..ports import AsyncReplayStore, ReplayStore

__all__ = ["AsyncFailOpenReplayStore", "FailOpenReplayStore"]

logger = logging.getLogger("dpop_middleware")

FailOpenHook = Callable[[str], None]


def _announce(store: object) -> None:
    logger.error(
        "dpop replay store %r is wrapped to FAIL OPEN: while it is unavailable, DPoP proofs are accepted "
        "without replay protection. Remove FailOpenReplayStore to fail closed (503).",
        store,
        extra={"dpop_reason": "replay_store_fail_open_enabled", "dpop_outcome": "fail_open"},
    )


def _describe(exc: Exception) -> tuple[str, str]:
    """The store's reason code and the kind of failure underneath (a class name, never a message)."""
    if isinstance(exc, DPoPError):
        return exc.reason, str(exc.diagnostics.get("store_error", type(exc).__name__))
    return "replay_store_unavailable", type(exc).__name__


class _FailOpenBase:
    def __init__(self, store: Any, on_fail_open: FailOpenHook | None) -> None:
        self.store = store
        self.fail_opens = 0
        self._on_fail_open = on_fail_open
        _announce(store)

    def _opened(self, exc: Exception) -> bool:
        self.fail_opens += 1
        store_reason, store_error = _describe(exc)
        logger.error(
            "dpop FAIL OPEN: replay store unavailable (%s: %s); request accepted without replay check",
            store_reason,
            store_error,
            extra={
                "dpop_reason": "replay_store_unavailable",
                "dpop_outcome": "fail_open",
                "dpop_store_reason": store_reason,
                "dpop_store_error": store_error,
            },
        )
        if self._on_fail_open is not None:
            try:
                self._on_fail_open(store_reason)
            except Exception:  # a broken metrics hook must not change the answer
                logger.exception("dpop on_fail_open hook failed")
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"


class FailOpenReplayStore(_FailOpenBase):
    """Wraps a synchronous :class:`~dpop_middleware.ReplayStore`; accepts when it raises.

    A replay (the store answering ``False``) is still a replay: only errors are turned into
    ``True``. Off unless you build it; for asyncio stores use :class:`AsyncFailOpenReplayStore`.
    """

    def __init__(self, store: ReplayStore, *, on_fail_open: FailOpenHook | None = None) -> None:
        if inspect.iscoroutinefunction(getattr(store, "add_if_absent", None)):
            raise TypeError("this store is asynchronous: wrap it in AsyncFailOpenReplayStore")
        super().__init__(store, on_fail_open)

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """The wrapped store's answer, or ``True`` (logged) if it could not give one."""
        try:
            return self.store.add_if_absent(key, ttl) is True
        except Exception as exc:  # noqa: BLE001 - whatever broke, this wrapper's job is to let it through
            return self._opened(exc)


class AsyncFailOpenReplayStore(_FailOpenBase):
    """The asyncio twin of :class:`FailOpenReplayStore` (the wrapped store may be sync or async)."""

    def __init__(self, store: AsyncReplayStore | ReplayStore, *, on_fail_open: FailOpenHook | None = None) -> None:
        super().__init__(store, on_fail_open)

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """The wrapped store's answer, or ``True`` (logged) if it could not give one."""
        try:
            answer = self.store.add_if_absent(key, ttl)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:  # noqa: BLE001 - whatever broke, this wrapper's job is to let it through
            return self._opened(exc)
        return answer is True
