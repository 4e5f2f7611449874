"""LoopDeadlines: one timer bounds every in-flight exchange of a store, like asyncio.timeout would."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from dpop_middleware.stores.deadlines import LoopDeadlines

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 delegates to asyncio.wait_for")


async def _reply(value: str, after: float) -> str:
    await asyncio.sleep(after)
    return value


async def test_an_exchange_within_its_deadline_returns_its_reply() -> None:
    deadlines = LoopDeadlines(asyncio.get_running_loop())
    assert await deadlines.run(_reply("OK", 0.01), 1.0) == "OK"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert not deadlines._deadlines and not deadlines._expired


async def test_an_overrunning_exchange_is_cancelled_at_its_deadline() -> None:
    deadlines = LoopDeadlines(asyncio.get_running_loop())
    cancelled = asyncio.Event()

    async def stalled() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadlines.run(stalled(), 0.1)
    elapsed = time.monotonic() - started
    assert 0.09 <= elapsed < 1.0
    assert cancelled.is_set()
    # The task's cancellation count is restored: it can go on awaiting, and outer timeouts still work.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    async with asyncio.timeout(1.0):
        assert await deadlines.run(_reply("again", 0.01), 1.0) == "again"


async def test_each_exchange_gets_its_own_deadline_from_one_timer() -> None:
    deadlines = LoopDeadlines(asyncio.get_running_loop())
    started = time.monotonic()
    ended: dict[str, float] = {}

    async def one(name: str, deadline: float, work: float) -> str:
        try:
            return await deadlines.run(_reply(name, work), deadline)
        except TimeoutError:
            return f"{name} timed out"
        finally:
            ended[name] = time.monotonic() - started

    results = await asyncio.gather(
        one("long", 0.4, 30), one("short", 0.1, 30), one("quick", 0.4, 0.02), one("mid", 0.25, 30)
    )
    assert results == ["long timed out", "short timed out", "quick", "mid timed out"]
    assert 0.09 <= ended["short"] < 0.25
    assert 0.24 <= ended["mid"] < 0.4
    assert 0.39 <= ended["long"] < 1.0
    assert ended["quick"] < 0.1
    assert not deadlines._deadlines and not deadlines._expired


async def test_a_cancellation_from_elsewhere_is_not_turned_into_a_timeout() -> None:
    deadlines = LoopDeadlines(asyncio.get_running_loop())
    task = asyncio.create_task(deadlines.run(_reply("never", 30), 5.0))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._deadlines and not deadlines._expired


async def test_cancelled_from_elsewhere_as_the_deadline_passes_stays_cancelled() -> None:
    deadlines = LoopDeadlines(asyncio.get_running_loop())
    task = asyncio.create_task(deadlines.run(_reply("never", 30), 0.05))
    await asyncio.sleep(0)  # the task is now waiting inside the exchange
    loop = asyncio.get_running_loop()
    # The outside cancel lands in the same loop iteration as the deadline's timer.
    loop.call_at(deadlines._timer_at, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
