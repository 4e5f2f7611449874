"""The signals operators see for every reason code: one outcome, one metric sample, one log record.

Each scenario goes through ``DPoPVerifier.authenticate`` with the Prometheus hook (a private
registry), the OpenTelemetry hook (the SDK's in-memory reader) and caplog all listening.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakes import FakeReplayStore
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from servers import free_port

from dpop_middleware import DPoPVerifier, MemoryReplayStore, NonceKeyring, Outcome, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.metrics import OpenTelemetryMetrics, PrometheusMetrics
from dpop_middleware.stores.redis import RedisReplayStore
from dpop_middleware.testing import TestIssuer, dpop_headers

TARGET = "https://api.test/protected"


@dataclass
class World:
    issuer: TestIssuer = field(default_factory=lambda: TestIssuer(audience="https://api.test"))
    key: DPoPKey = field(default_factory=DPoPKey.generate)

    def good(self, url: str = TARGET, **token_claims: Any) -> list[tuple[str, str]]:
        return list(dpop_headers(self.key, "GET", url, self.issuer.token(self.key.jkt, **token_claims)).items())


class _BrokenValidator:
    def validate(self, token: str) -> Any:
        raise RuntimeError("boom")


@dataclass
class Scenario:
    name: str
    expect: tuple[str, str, int, str | None]  # outcome, reason, status, scheme
    send: Callable[[DPoPVerifier, World], Any]
    options: dict[str, Any] = field(default_factory=dict)
    store: Callable[[], Any] | None = None
    validator: Callable[[World], Any] | None = None


def _req(headers: list[tuple[str, str]], url: str = TARGET) -> RequestInfo:
    return RequestInfo("GET", url, headers)


def _twice(v: DPoPVerifier, w: World) -> Any:
    headers = w.good()
    assert v.authenticate(_req(headers)).rejection is None
    return v.authenticate(_req(headers))


def _fill_then_send(v: DPoPVerifier, w: World) -> Any:
    assert v.authenticate(_req(w.good())).rejection is None
    return v.authenticate(_req(w.good()))


def _scoped(v: DPoPVerifier, w: World) -> Any:
    request = _req(w.good())
    result = v.authenticate(request)
    return v.authorize(result.principal, ("write",), request).rejection


SCENARIOS = [
    Scenario("accepted", ("accepted", "ok", 200, "DPoP"), lambda v, w: v.authenticate(_req(w.good()))),
    Scenario("anonymous", ("anonymous", "missing_credentials", 200, None), lambda v, w: v.authenticate(_req([]), required=False)),
    Scenario("missing_credentials", ("rejected", "missing_credentials", 401, "DPoP"), lambda v, w: v.authenticate(_req([]))),
    Scenario("replayed", ("rejected", "replayed", 401, "DPoP"), _twice),
    Scenario(
        "key_binding_mismatch",
        ("rejected", "key_binding_mismatch", 401, "DPoP"),
        lambda v, w: v.authenticate(_req(list(dpop_headers(DPoPKey.generate(), "GET", TARGET, w.issuer.token(w.key.jkt)).items()))),
    ),
    Scenario("htu_mismatch", ("rejected", "htu_mismatch", 401, "DPoP"), lambda v, w: v.authenticate(_req(w.good("https://api.test/other")))),
    Scenario("token_expired", ("rejected", "token_expired", 401, "DPoP"), lambda v, w: v.authenticate(_req(w.good(lifetime=-100)))),
    Scenario(
        "multiple_dpop_headers",
        ("rejected", "multiple_dpop_headers", 400, "DPoP"),
        lambda v, w: v.authenticate(_req([*w.good(), ("DPoP", dict(w.good())["DPoP"])])),
    ),
    Scenario(
        "nonce_missing",
        ("rejected", "nonce_missing", 401, "DPoP"),
        lambda v, w: v.authenticate(_req(w.good())),
        options={"nonce_policy": "always", "nonce_keyring": NonceKeyring({"k1": b"0123456789abcdef0123"})},
    ),
    Scenario("insufficient_scope", ("rejected", "insufficient_scope", 403, "DPoP"), _scoped),
    Scenario(
        "bound_token_as_bearer",
        ("rejected", "bound_token_as_bearer", 401, "Bearer"),
        lambda v, w: v.authenticate(_req([("Authorization", f"Bearer {w.issuer.token(w.key.jkt)}")])),
        options={"mode": "allow_bearer"},
    ),
    Scenario(
        "report_only_bad_proof",
        ("reported", "key_binding_mismatch", 401, "DPoP"),
        lambda v, w: v.authenticate(_req(list(dpop_headers(DPoPKey.generate(), "GET", TARGET, w.issuer.token(w.key.jkt)).items()))),
        options={"mode": "report_only"},
    ),
    Scenario(
        "report_only_bearer_used",
        ("reported", "bearer_token_used", 401, "Bearer"),
        lambda v, w: v.authenticate(_req([("Authorization", f"Bearer {w.issuer.token(None)}")])),
        options={"mode": "report_only"},
    ),
    Scenario(
        "replay_store_unavailable",
        ("rejected", "replay_store_unavailable", 503, "DPoP"),
        lambda v, w: v.authenticate(_req(w.good())),
        store=lambda: FakeReplayStore("error"),
    ),
    Scenario(
        "redis_store_down",
        ("rejected", "replay_store_unavailable", 503, "DPoP"),
        lambda v, w: v.authenticate(_req(w.good())),
        store=lambda: RedisReplayStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5, timeout=0.5),
    ),
    Scenario(
        "replay_store_full",
        ("rejected", "replay_store_full", 503, "DPoP"),
        _fill_then_send,
        store=lambda: MemoryReplayStore(max_entries=1),
    ),
    Scenario(
        "token_validator_error",
        ("rejected", "token_validator_error", 503, "DPoP"),
        lambda v, w: v.authenticate(_req(w.good())),
        validator=lambda w: _BrokenValidator(),
    ),
]


@dataclass
class Signals:
    outcomes: list[Outcome]
    prometheus: PrometheusMetrics
    registry: CollectorRegistry
    reader: InMemoryMetricReader
    otel: OpenTelemetryMetrics

    def otel_points(self) -> dict[tuple[str, str, str], int]:
        points: dict[tuple[str, str, str], int] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    assert metric.name == "dpop.requests"
                    for p in metric.data.data_points:
                        a = p.attributes or {}
                        points[(str(a["dpop.outcome"]), str(a["dpop.reason"]), str(a["dpop.scheme"]))] = int(p.value)  # type: ignore[attr-defined]
        return points


@pytest.fixture
def signals() -> Iterator[Signals]:
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Signals([], PrometheusMetrics(registry), registry, reader, OpenTelemetryMetrics(meter_provider=provider))
    provider.shutdown()


def _verifier(scenario: Scenario, world: World, signals: Signals) -> DPoPVerifier:
    def hook(outcome: Outcome) -> None:
        signals.outcomes.append(outcome)
        signals.prometheus(outcome)
        signals.otel(outcome)

    validator = scenario.validator(world) if scenario.validator else world.issuer.validator()
    store = scenario.store() if scenario.store else None
    return DPoPVerifier(validator, replay_store=store, on_outcome=hook, **scenario.options)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_each_reason_code_is_counted_and_logged(
    scenario: Scenario, signals: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    world = World()
    verifier = _verifier(scenario, world, signals)
    with caplog.at_level(logging.DEBUG, logger="dpop_middleware"):
        caplog.clear()
        scenario.send(verifier, world)
    outcome, reason, status, scheme = scenario.expect

    last = signals.outcomes[-1]
    assert (last.outcome, last.reason, last.status, last.scheme) == scenario.expect
    label_scheme = scheme or "none"
    sample = signals.registry.get_sample_value(
        "dpop_requests_total", {"outcome": outcome, "reason": reason, "scheme": label_scheme}
    )
    assert sample == 1
    assert signals.otel_points()[(outcome, reason, label_scheme)] == 1

    records = [r for r in caplog.records if getattr(r, "dpop_outcome", None) in ("rejected", "reported")]
    if outcome in ("accepted", "anonymous"):
        assert records == []
        return
    assert records, "a rejection must be logged"
    record = records[-1]
    assert record.dpop_reason == reason  # type: ignore[attr-defined]
    assert record.dpop_outcome == outcome  # type: ignore[attr-defined]
    assert record.dpop_scheme == scheme  # type: ignore[attr-defined]
    assert record.dpop_status == status  # type: ignore[attr-defined]
    assert record.levelno == (logging.WARNING if status >= 500 else logging.INFO)
    if scenario.name == "redis_store_down":  # the log says which kind of failure, without the URL
        assert record.dpop_store_error == "ConnectionError"  # type: ignore[attr-defined]
    elif reason.startswith("replay_store"):  # the store's own line (or the verifier's) names the part
        assert [r for r in caplog.records if r is not record and getattr(r, "dpop_reason", "") == reason]



def test_full_memory_store_refuses_with_503_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    store = MemoryReplayStore(max_entries=2)
    verifier = DPoPVerifier(world.issuer.validator(), replay_store=store)
    for _ in range(2):
        assert verifier.authenticate(_req(world.good())).rejection is None
    with caplog.at_level(logging.INFO, logger="dpop_middleware"):
        rejection = verifier.authenticate(_req(world.good())).rejection
    assert rejection is not None and rejection.status == 503
    headers = dict(rejection.headers)
    assert headers["Retry-After"].isdigit()
    assert "WWW-Authenticate" not in headers
    assert store.refusals == 1 and len(store) == 2  # nothing live was evicted
    full = [r for r in caplog.records if getattr(r, "dpop_reason", "") == "replay_store_full"]
    assert any("replay store full" in r.getMessage() for r in full)


async def test_async_path_emits_the_same_signals(signals: Signals) -> None:
    world = World()
    verifier = DPoPVerifier(world.issuer.validator(), on_outcome=signals.prometheus)
    headers = world.good()
    assert (await verifier.aauthenticate(_req(headers))).rejection is None
    assert (await verifier.aauthenticate(_req(headers))).rejection is not None
    sample = signals.registry.get_sample_value
    assert sample("dpop_requests_total", {"outcome": "accepted", "reason": "ok", "scheme": "DPoP"}) == 1
    assert sample("dpop_requests_total", {"outcome": "rejected", "reason": "replayed", "scheme": "DPoP"}) == 1


def test_fail_open_is_counted(signals: Signals) -> None:
    signals.prometheus.fail_open("replay_store_unavailable")
    signals.otel.fail_open("replay_store_unavailable")
    labels = {"outcome": "fail_open", "reason": "replay_store_unavailable", "scheme": "DPoP"}
    assert signals.registry.get_sample_value("dpop_requests_total", labels) == 1
    assert signals.otel_points()[("fail_open", "replay_store_unavailable", "DPoP")] == 1


def test_custom_counter_name_and_one_counter_per_registry() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, name="api_dpop")
    metrics(Outcome("accepted", "ok", 200, "DPoP"))
    assert registry.get_sample_value("api_dpop_total", {"outcome": "accepted", "reason": "ok", "scheme": "DPoP"}) == 1
    with pytest.raises(ValueError):
        PrometheusMetrics(registry, name="api_dpop")


@pytest.mark.parametrize(
    ("module", "build", "hint"),
    [
        ("prometheus_client", lambda: PrometheusMetrics(CollectorRegistry()), "dpop-middleware[prometheus]"),
        ("opentelemetry", OpenTelemetryMetrics, "dpop-middleware[opentelemetry]"),
    ],
)
def test_missing_optional_package_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, build: Callable[[], object], hint: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes ``import module`` raise ImportError
    with pytest.raises(ImportError, match=hint.replace("[", r"\[").replace("]", r"\]")):
        build()
