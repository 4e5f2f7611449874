"""The Redis replay stores behind Sentinel (``redis+sentinel://``): the master is killed under load.

While no master is reachable every request is answered 503 (never accepted on a guess); once the
sentinels have promoted the replica, the same store object serves again without a restart; and no
proof is ever accepted twice, before, during or after the failover.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_topologies import SentinelGroup, require_redis_binaries, sentinel_group

from dpop_middleware import DPoPVerifier, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.errors import ReplayStoreUnavailable
from dpop_middleware.stores.redis import RedisReplayStore
from dpop_middleware.testing import TestIssuer, dpop_headers

TARGET = "https://api.test/protected"


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """One group for the module (sentinels take seconds to meet): the first test fails it over."""
    require_redis_binaries()
    with sentinel_group(tmp_path_factory.mktemp("sentinel")) as running_group:
        yield running_group


def _kill_master(group: SentinelGroup) -> None:
    os.kill(group.processes[group.master].pid, signal.SIGKILL)
    group.processes[group.master].wait(5)


def _failed_over(group: SentinelGroup) -> bool:
    return group.processes[group.master].poll() is not None


def test_master_killed_mid_load_503_then_failover_resumes_and_no_proof_twice(group: SentinelGroup) -> None:
    issuer = TestIssuer(audience="https://api.test")
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    verifier = DPoPVerifier(
        issuer.validator(), replay_store=RedisReplayStore(group.url(), connect_timeout=0.3, timeout=0.3)
    )
    requests: list[RequestInfo] = []
    statuses: list[tuple[float, int]] = []  # (when, status) of each first sending
    accepted: set[int] = set()  # index of each proof accepted, at any sending
    killed_at: list[float] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            request = RequestInfo("GET", TARGET, list(dpop_headers(key, "GET", TARGET, token).items()))
            requests.append(request)
            rejection = verifier.authenticate(request).rejection
            statuses.append((time.monotonic(), 200 if rejection is None else rejection.status))
            if rejection is None:
                accepted.add(len(requests) - 1)
            time.sleep(0.005)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        _kill_master(group)
        killed_at.append(time.monotonic())
        deadline = time.monotonic() + 20
        while group.master_port() in (group.master, None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group.master_port() == group.replica, "the sentinels did not promote the replica"
        resumed = time.monotonic() + 10
        while time.monotonic() < resumed and statuses[-1][1] != 200:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(10)
    before = [s for t, s in statuses if t < killed_at[0]]
    after_kill = [s for t, s in statuses if t >= killed_at[0]]
    # Before the kill the store serves (a timeout on this shared machine may refuse one, never accept).
    assert set(before) <= {200, 503} and before.count(200) > len(before) // 2, before
    assert 503 in after_kill  # no master reachable: fail closed
    assert set(after_kill) <= {200, 503}
    assert after_kill[-1] == 200  # the same store, no restart, talks to the new master
    # Every proof sent again after the failover: each that was accepted is now a replay (its entry
    # reached the replica before the old master died); one answered 503 was never recorded, so it
    # may be accepted now, once: a third sending of every proof is refused.
    assert accepted
    for index, request in enumerate(requests):
        again = verifier.authenticate(request).rejection
        if index in accepted:
            assert again is not None and again.error.reason == "replayed", index
        third = verifier.authenticate(request).rejection
        assert third is not None and third.error.reason == "replayed", index


def test_wait_for_a_replica_fails_closed_when_no_replica_acknowledges(group: SentinelGroup) -> None:
    """Before the failover the replica acknowledges; after it the new master has none: 503."""
    store = RedisReplayStore(group.url(), connect_timeout=0.2, timeout=0.5, wait_replicas=1, wait_timeout_ms=100)
    key = os.urandom(16)
    if not _failed_over(group):  # run alone: the replica is still there to acknowledge
        assert store.add_if_absent(key, 30) is True
        assert store.add_if_absent(key, 30) is False
        _kill_master(group)
    deadline = time.monotonic() + 20
    while group.master_port() in (group.master, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group.master_port() == group.replica
    # The new master has no replica left: the write happens, but nobody acknowledges it -> 503.
    outcome: BaseException | None = None
    for _ in range(100):
        try:
            store.add_if_absent(os.urandom(16), 30)
        except ReplayStoreUnavailable as exc:
            outcome = exc
            if exc.diagnostics.get("store_error") == "replica_not_acknowledged":
                break
        time.sleep(0.05)
    assert isinstance(outcome, ReplayStoreUnavailable)
    assert outcome.diagnostics == {"store_error": "replica_not_acknowledged"}
    store.close()


def test_wait_for_a_replica_accepts_once_the_replica_acknowledges(tmp_path: Path) -> None:
    """Against a plain master and replica (no sentinels): WAIT 1 is met, the entry is on both."""
    require_redis_binaries()
    with sentinel_group(tmp_path, sentinels=0) as pair:
        store = RedisReplayStore(f"redis://127.0.0.1:{pair.master}/0", wait_replicas=1, wait_timeout_ms=1000, timeout=2)
        key = os.urandom(16)
        assert store.add_if_absent(key, 30) is True
        assert store.add_if_absent(key, 30) is False
        with redis.Redis(port=pair.replica, socket_timeout=2) as replica:
            assert replica.exists(b"dpop:jti:" + key)  # acknowledged means already on the replica
        store.close()
