"""Redis faults under load on real multi-worker servers: fail closed, then recover by itself.

* Redis stopped in the middle of a load run: every request sent during the outage gets 503 with
  ``Retry-After``, none is accepted; Redis started again on the same port: 200s come back without
  restarting the app.
* Redis paused (SIGSTOP, a stalled server whose socket still accepts connections): requests get
  503 once the configured timeout has passed, not after redis-py's default retries.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from concurrency_apps.config import app_env
from concurrency_apps.support import APP_IDS, APPS, AppSpec, Load, app_server, redis_process, send
from servers import free_port

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers

STORE_TIMEOUT = 0.3  # seconds, connect and read: what the apps are configured with
PER_PHASE = 15  # replies to see in each phase


def _assert_unavailable(reply_status: int, headers: dict[str, str]) -> None:
    assert reply_status == 503
    assert headers.get("retry-after", "").isdigit()
    assert "www-authenticate" not in headers


@pytest.mark.parametrize("spec", APPS, ids=APP_IDS)
def test_redis_outage_mid_load_fails_closed_then_recovers(spec: AppSpec) -> None:
    issuer = TestIssuer()
    redis_port = free_port()
    env = app_env(issuer, f"redis://127.0.0.1:{redis_port}/0", timeout=STORE_TIMEOUT)
    with contextlib.ExitStack() as stack:
        first_redis = contextlib.ExitStack()
        first_redis.enter_context(redis_process(redis_port))
        stack.callback(first_redis.close)
        port = stack.enter_context(app_server(spec, env))
        load = stack.enter_context(Load(port, issuer))

        load.wait_for("200", PER_PHASE, since=0.0)
        stopping = time.monotonic()
        first_redis.close()  # returns once redis-server has exited
        down = time.monotonic()
        load.wait_for("any", PER_PHASE, since=down)
        up = time.monotonic()
        stack.enter_context(redis_process(redis_port))
        load.wait_for("200", PER_PHASE, since=time.monotonic())
        load.__exit__()
        replies = load.snapshot()

    assert not load.errors
    assert {r.status for r in replies} <= {200, 503}, {r.status for r in replies}
    before = [r for r in replies if r.ended < stopping]
    during = [r for r in replies if r.started >= down and r.ended <= up]
    after = [r for r in replies if r.started >= up]
    assert before and all(r.status == 200 for r in before)
    assert len(during) >= PER_PHASE
    for reply in during:  # none accepted while the store could not vouch for the proof
        _assert_unavailable(reply.status, reply.headers)
    assert any(r.status == 200 for r in after), "did not recover after Redis came back"
    # Once one request passes again, the store is healthy: later requests must all pass.
    first_ok = min(r.started for r in after if r.status == 200)
    late = [r for r in after if r.started > first_ok + 1.0]
    assert all(r.status == 200 for r in late), [r.status for r in late]


@pytest.mark.parametrize("spec", APPS, ids=APP_IDS)
def test_stalled_redis_gives_503_within_the_timeout(spec: AppSpec) -> None:
    issuer = TestIssuer()
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    with redis_process() as (redis_port, redis_pid):
        env = app_env(issuer, f"redis://127.0.0.1:{redis_port}/0", timeout=STORE_TIMEOUT)
        with app_server(spec, env) as port:
            url = f"http://127.0.0.1:{port}/protected"
            assert send(port, "/protected", dpop_headers(key, "GET", url, token)).status == 200
            os.kill(redis_pid, signal.SIGSTOP)
            try:
                for _ in range(4):
                    reply = send(port, "/protected", dpop_headers(key, "GET", url, token))
                    _assert_unavailable(reply.status, reply.headers)
                    # Bounded by connect + read timeout; the margin absorbs a loaded CI machine, while
                    # redis-py's default (retries with backoff) would take many seconds.
                    assert reply.ended - reply.started < 2 * STORE_TIMEOUT + 1.5
            finally:
                os.kill(redis_pid, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while True:
                reply = send(port, "/protected", dpop_headers(key, "GET", url, token))
                if reply.status == 200 or time.monotonic() > deadline:
                    break
                _assert_unavailable(reply.status, reply.headers)
            assert reply.status == 200, "did not recover after Redis resumed"
