"""Verification flows written once and driven sync or async (design.md §1).

A flow is a generator that yields a ``PortCall`` for each step that needs I/O (validate a
token, record a proof in the replay store) and receives the port's answer back, or its exception
thrown in at the ``yield``. Every decision, including what a port's failure means, is made in the
flow; :func:`run_sync` and :func:`run_async` only call the port, the second awaiting what it
returns. This is the shape of ``tokens/_http.py`` and of httpx's ``Auth.auth_flow``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from .core.errors import DPoPError, InvalidDPoPProofError, ReplayStoreUnavailable
from .core.proof import VerifiedProof

__all__ = [
    "AsyncPortInSyncCall",
    "Flow",
    "PortCall",
    "check_fresh",
    "port_failure",
    "replay_call",
    "run_async",
    "run_sync",
    "store_failure",
]

logger = logging.getLogger("dpop_middleware")

T = TypeVar("T")


#: One call to a port: ``(sync, asynchronous, args)``. Driven synchronously, ``sync(*args)`` is called
#: (``None``: the port only has an asyncio flavour); on the event loop, ``asynchronous(*args)``, awaited
#: if it returns an awaitable. A plain tuple: one is built per request on the hot path, and a
#: NamedTuple's constructor costs three times as much.
PortCall = tuple[Callable[..., Any] | None, Callable[..., Any], tuple[Any, ...]]
Flow = Generator[PortCall, Any, T]


class AsyncPortInSyncCall(TypeError):
    """An asyncio-only port was driven by :func:`run_sync`: a wiring error the flow turns into a 503."""


def run_sync(flow: Flow[T]) -> T:
    """Drive ``flow`` to its result, calling each port synchronously."""
    try:
        call = next(flow)
        while True:
            port, _, args = call
            try:
                if port is None:
                    raise AsyncPortInSyncCall("this port is asyncio-only")
                answer = port(*args)
                # A memory store's bool needs no awaitable check (the hot path).
                if answer.__class__ is not bool and inspect.isawaitable(answer):
                    _close(answer)
                    raise AsyncPortInSyncCall("this port returned an awaitable to a synchronous caller")
            except Exception as exc:  # noqa: BLE001 - the flow decides what a port failure means
                call = flow.throw(exc)
                continue
            call = flow.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(flow: Flow[T]) -> T:
    """Drive ``flow`` to its result on the running event loop, awaiting what a port returns."""
    try:
        call = next(flow)
        while True:
            try:
                answer = call[1](*call[2])
                # A sync port answers at once (a bool from a memory store): skip the await machinery.
                if answer.__class__ is not bool and inspect.isawaitable(answer):
                    answer = await answer
            except Exception as exc:  # noqa: BLE001 - the flow decides what a port failure means
                call = flow.throw(exc)
            else:
                call = flow.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


def _close(awaitable: object) -> None:
    """Close a coroutine nobody will await, rather than leak a "never awaited" warning."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def replay_call(store: Any, proof: VerifiedProof) -> PortCall:
    """The last step on both sides: record the proof's ``jti`` in ``store`` (``add_if_absent``)."""
    add = store.add_if_absent
    return (add, add, (proof.replay_key, proof.replay_ttl))


def port_failure(
    exc: Exception, port: str, unavailable: Callable[[str], DPoPError], *, misconfigured: str, failed: str
) -> DPoPError:
    """What a port's failure means on both sides: its own :class:`DPoPError`, else a 503 that never
    admits a request (``misconfigured``: an asyncio port driven synchronously, a wiring error)."""
    if isinstance(exc, DPoPError):
        return exc
    if isinstance(exc, AsyncPortInSyncCall):
        logger.error(
            "dpop: an asyncio %s was called synchronously; use averify()/aauthenticate()", port,
            extra={"dpop_reason": misconfigured},
        )  # fmt: skip
        return unavailable(misconfigured)
    logger.error("dpop %s failed: %s; refusing with 503", port, type(exc).__name__, extra={"dpop_reason": failed})
    return unavailable(failed)


def store_failure(exc: Exception) -> DPoPError:
    """What a replay store's failure means: a 503, never an admitted request or an issued token."""
    return port_failure(
        exc, "replay store", ReplayStoreUnavailable,
        misconfigured="replay_store_misconfigured", failed="replay_store_unavailable",
    )  # fmt: skip


def check_fresh(added: object) -> None:
    """A store's answer: anything but ``True`` means the proof was seen before (a replay)."""
    if added is not True:
        raise InvalidDPoPProofError("replayed", "DPoP proof already used")
