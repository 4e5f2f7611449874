"""A per-process replay store refuses to serve once it shares a server with sibling worker processes."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from fakes import TestClock

from dpop_middleware import MemoryReplayStore
from dpop_middleware.core.errors import ReplayStoreUnavailable
from dpop_middleware.stores.process_guard import ProcessGuard

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the guard works on POSIX only (documented)")


def _worker(registry: str, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    guard = ProcessGuard(registry=Path(registry), recheck_seconds=0.0)
    store = MemoryReplayStore(guard=guard, setting="DPOP_REPLAY_STORE")
    outcomes = []
    start.wait()
    for attempt in range(2):
        try:
            outcomes.append(store.add_if_absent(b"same-proof", 60))
        except ReplayStoreUnavailable as exc:
            outcomes.append(exc.reason)
        if attempt == 0:
            start.wait()  # every sibling has registered before anyone asks again
    results.put(outcomes)
    start.wait()  # stay alive until every sibling has looked


def test_forked_workers_never_both_accept_and_all_refuse_once_registered(tmp_path):
    ctx = multiprocessing.get_context("fork")  # siblings of one parent, with its argv: a server's workers
    start, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(str(tmp_path), start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    first = [o[0] for o in outcomes]
    assert first.count(True) <= 1, first  # at most one process ever believes it is alone
    assert all(o[1] == "replay_store_per_process" for o in outcomes), outcomes


def test_a_single_process_serves_and_a_dead_sibling_is_forgotten(tmp_path):
    guard = ProcessGuard(registry=tmp_path, recheck_seconds=0.0)
    store = MemoryReplayStore(guard=guard)
    assert store.add_if_absent(b"k1", 60) is True
    assert store.add_if_absent(b"k1", 60) is False
    group = next(p for p in tmp_path.iterdir() if p.is_dir())
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    (group / str(child.pid)).touch()  # a file left by a worker that has died
    assert store.add_if_absent(b"k2", 60) is True
    assert not (group / str(child.pid)).exists()


def test_a_live_process_of_another_parent_is_no_sibling(tmp_path):
    guard = ProcessGuard(registry=tmp_path, recheck_seconds=0.0)
    store = MemoryReplayStore(guard=guard)
    assert store.add_if_absent(b"k1", 60) is True
    group = next(p for p in tmp_path.iterdir() if p.is_dir())
    (group / "1").touch()  # init is alive, but it is not a child of our parent: a reused pid
    assert store.add_if_absent(b"k2", 60) is True


def _logging_worker(registry: str, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("dpop_middleware").addHandler(handler)
    store = MemoryReplayStore(guard=ProcessGuard(registry=Path(registry), recheck_seconds=0.0),
                              setting="DPOP['REPLAY_STORE']")
    start.wait()
    with contextlib.suppress(ReplayStoreUnavailable):
        store.add_if_absent(b"k0", 60)  # registers
    start.wait()
    reasons = []
    for key in (b"k1", b"k2", b"k3"):
        try:
            store.add_if_absent(key, 60)
            reasons.append("accepted")
        except ReplayStoreUnavailable as exc:
            reasons.append(f"{exc.status} {exc.reason}")
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    results.put((reasons, errors))
    start.wait()


def test_refusal_logs_one_error_naming_the_setting(tmp_path):
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_logging_worker, args=(str(tmp_path), start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    for reasons, errors in outcomes:
        assert reasons == ["503 replay_store_per_process"] * 3
        assert len(errors) == 1, errors  # one ERROR per process, not one per request
        assert "DPOP['REPLAY_STORE']" in errors[0]


def test_allow_multiple_processes_opts_out(tmp_path):
    store = MemoryReplayStore(allow_multiple_processes=True)
    assert store.add_if_absent(b"k", 60) is True


def test_a_registry_writable_by_others_is_not_trusted(tmp_path):
    registry = tmp_path / "reg"
    registry.mkdir(mode=0o777)
    registry.chmod(0o777)
    store = MemoryReplayStore(guard=ProcessGuard(registry=registry, recheck_seconds=0.0))
    with pytest.raises(ReplayStoreUnavailable):
        store.add_if_absent(b"k", 60)


def test_full_store_accepts_after_its_sweep_rebuilds_it():
    # A long-lived entry in front of expired short ones: only a sweep finds the dead ones, and the
    # store must then use the rebuilt dict, not refuse with the one it held before (issue 19 §1.5).
    clock = TestClock(1000.0)
    store = MemoryReplayStore(3, clock=clock, allow_multiple_processes=True)
    assert store.add_if_absent(b"long", 100)
    assert store.add_if_absent(b"short1", 1)
    assert store.add_if_absent(b"short2", 1)
    clock.advance(2)
    assert store.add_if_absent(b"new", 60) is True
    assert store.refusals == 0
    assert len(store) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_entries_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(bad)
