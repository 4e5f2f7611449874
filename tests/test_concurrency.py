"""Replay protection across the workers of real multi-worker servers, on a real Redis.

The same valid proof is sent at the same instant to every worker, round after round: exactly one
copy may be accepted each time (the Redis ``SET NX`` decides), every other copy is a 401 replay.
The app under test is a parameter (see ``concurrency_apps.support.APPS``).
"""

from __future__ import annotations

import json
import time

import pytest
from concurrency_apps.config import app_env
from concurrency_apps.support import APP_IDS, APPS, AppSpec, app_server, fire_to_every_worker, redis_process

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers

ROUNDS = 15
COPIES_PER_WORKER = 2


@pytest.mark.parametrize("spec", APPS, ids=APP_IDS)
def test_same_proof_to_every_worker_is_accepted_once(spec: AppSpec) -> None:
    issuer = TestIssuer()
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    copies = spec.workers * COPIES_PER_WORKER
    accepted_total = 0
    rounds_on_every_worker = 0
    pids: set[str] = set()
    with redis_process() as (redis_port, _), app_server(spec, app_env(issuer, f"redis://127.0.0.1:{redis_port}/0")) as port:
        url = f"http://127.0.0.1:{port}/protected"
        for _ in range(ROUNDS):
            headers = dpop_headers(key, "GET", url, token)
            replies = fire_to_every_worker(port, "/protected", headers, spec.workers, COPIES_PER_WORKER)
            pids.update(r.pid for r in replies)
            rounds_on_every_worker += len({r.pid for r in replies}) == spec.workers
            statuses = sorted(r.status for r in replies)
            assert statuses == [200] + [401] * (copies - 1), statuses
            for reply in replies:
                if reply.status == 401:
                    assert 'error="invalid_dpop_proof"' in reply.headers["www-authenticate"]
                else:
                    assert json.loads(reply.body)["sub"] == "alice"
            accepted_total += statuses.count(200)
    assert accepted_total == ROUNDS  # zero double-accepts, and no round lost its one legitimate use
    assert len(pids) == spec.workers
    assert rounds_on_every_worker >= ROUNDS // 2, f"only {rounds_on_every_worker} rounds reached every worker"


@pytest.mark.parametrize("spec", APPS, ids=APP_IDS)
def test_default_memory_store_under_several_workers_refuses_instead_of_double_accepting(spec: AppSpec) -> None:
    """The in-memory store's guard: once the workers have met, every copy is refused with 503.

    Before they have met, at most one worker can believe it is alone (see ``process_guard``), so
    no round may ever see two acceptances.
    """
    issuer = TestIssuer()
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    statuses_seen: list[int] = []
    with app_server(spec, app_env(issuer, "memory")) as port:
        url = f"http://127.0.0.1:{port}/protected"
        for _ in range(5):
            replies = fire_to_every_worker(port, "/protected", dpop_headers(key, "GET", url, token), spec.workers, 2)
            statuses = [r.status for r in replies]
            assert statuses.count(200) <= 1, statuses
            assert set(statuses) <= {200, 401, 503}, statuses
            statuses_seen.extend(statuses)
        time.sleep(1.1)  # past the guard's recheck: the worker that was first alone has met the others
        replies = fire_to_every_worker(port, "/protected", dpop_headers(key, "GET", url, token), spec.workers, 2)
        assert [r.status for r in replies] == [503] * len(replies)
    assert 503 in statuses_seen


def test_the_harness_catches_a_per_process_store() -> None:
    """Control: with the guard switched off, each worker accepts the proof once: a double accept.

    This is why the guard exists, and it shows the tests above really reach several workers at
    the same instant.
    """
    spec = next(s for s in APPS if s.kind == "asgi")
    issuer = TestIssuer()
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    double_accepts = 0
    with app_server(spec, app_env(issuer, "memory-per-process")) as port:
        url = f"http://127.0.0.1:{port}/protected"
        for _ in range(5):
            replies = fire_to_every_worker(port, "/protected", dpop_headers(key, "GET", url, token), spec.workers, 1)
            double_accepts += sum(r.status == 200 for r in replies) > 1
    assert double_accepts > 0
