"""The explicit fail-open switch: off unless built, loud when built, loud on every use."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from concurrency_apps.support import redis_process
from prometheus_client import CollectorRegistry
from servers import free_port

from dpop_middleware import DPoPVerifier, MemoryReplayStore, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.metrics import PrometheusMetrics
from dpop_middleware.stores.failopen import AsyncFailOpenReplayStore, FailOpenReplayStore
from dpop_middleware.stores.redis import AsyncRedisReplayStore, RedisReplayStore
from dpop_middleware.testing import TestIssuer, dpop_headers

TARGET = "https://api.test/protected"


def _request(issuer: TestIssuer, key: DPoPKey) -> RequestInfo:
    return RequestInfo("GET", TARGET, list(dpop_headers(key, "GET", TARGET, issuer.token(key.jkt)).items()))


def _down_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def _fail_open_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if getattr(r, "dpop_outcome", "") == "fail_open" and getattr(r, "dpop_reason", "") == "replay_store_unavailable"
    ]


def test_without_the_wrapper_a_down_store_is_503() -> None:
    issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
    verifier = DPoPVerifier(issuer.validator(), replay_store=RedisReplayStore(_down_url()))
    rejection = verifier.authenticate(_request(issuer, key)).rejection
    assert rejection is not None and rejection.status == 503


def test_building_the_wrapper_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        FailOpenReplayStore(MemoryReplayStore())
    [record] = [r for r in caplog.records if getattr(r, "dpop_reason", "") == "replay_store_fail_open_enabled"]
    assert record.levelno == logging.ERROR
    assert "FAIL OPEN" in record.getMessage()


def test_down_redis_fails_open_with_a_log_line_and_a_metric(caplog: pytest.LogCaptureFixture) -> None:
    issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    store = FailOpenReplayStore(RedisReplayStore(_down_url()), on_fail_open=metrics.fail_open)
    verifier = DPoPVerifier(issuer.validator(), replay_store=store, on_outcome=metrics)
    with caplog.at_level(logging.INFO, logger="dpop_middleware"):
        caplog.clear()
        result = verifier.authenticate(_request(issuer, key))
    assert result.rejection is None and result.principal is not None
    [record] = _fail_open_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.dpop_reason == "replay_store_unavailable"  # type: ignore[attr-defined]
    assert record.dpop_store_error == "ConnectionError"  # type: ignore[attr-defined]
    assert store.fail_opens == 1
    labels = {"outcome": "fail_open", "reason": "replay_store_unavailable", "scheme": "DPoP"}
    assert registry.get_sample_value("dpop_requests_total", labels) == 1


def test_a_replay_is_still_a_replay_when_the_store_answers() -> None:
    issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
    with redis_process() as (port, _):
        store = FailOpenReplayStore(RedisReplayStore(f"redis://127.0.0.1:{port}/0"))
        verifier = DPoPVerifier(issuer.validator(), replay_store=store)
        request = _request(issuer, key)
        assert verifier.authenticate(request).rejection is None
        rejection = verifier.authenticate(request).rejection
        assert rejection is not None and rejection.error.reason == "replayed"
        assert store.fail_opens == 0


def test_full_memory_store_fails_open_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    store = FailOpenReplayStore(MemoryReplayStore(max_entries=1))
    with caplog.at_level(logging.INFO, logger="dpop_middleware"):
        assert store.add_if_absent(os.urandom(16), 30) is True
        assert store.add_if_absent(os.urandom(16), 30) is True  # full: let through, loudly
    [record] = _fail_open_records(caplog)
    assert record.dpop_store_reason == "replay_store_full"  # type: ignore[attr-defined]


def test_a_broken_hook_does_not_change_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    def hook(reason: str) -> None:
        raise RuntimeError("metrics backend down")

    store = FailOpenReplayStore(RedisReplayStore(_down_url()), on_fail_open=hook)
    assert store.add_if_absent(os.urandom(16), 30) is True


def test_sync_wrapper_refuses_an_async_store() -> None:
    with pytest.raises(TypeError, match="AsyncFailOpenReplayStore"):
        FailOpenReplayStore(AsyncRedisReplayStore(_down_url()))  # type: ignore[arg-type]


async def test_async_wrapper_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
    calls: list[Any] = []
    store = AsyncFailOpenReplayStore(AsyncRedisReplayStore(_down_url()), on_fail_open=calls.append)
    verifier = DPoPVerifier(issuer.validator(), replay_store=store)
    with caplog.at_level(logging.INFO, logger="dpop_middleware"):
        result = await verifier.aauthenticate(_request(issuer, key))
    assert result.rejection is None
    assert calls == ["replay_store_unavailable"]
    assert len(_fail_open_records(caplog)) == 1
    # A sync store inside the async wrapper works too.
    sync_inside = AsyncFailOpenReplayStore(MemoryReplayStore())
    key_bytes = os.urandom(16)
    assert await sync_inside.add_if_absent(key_bytes, 30) is True
    assert await sync_inside.add_if_absent(key_bytes, 30) is False
