"""Ready ``on_outcome`` hooks: count every verified request in Prometheus or OpenTelemetry.

The verifier calls its ``on_outcome`` hook once per request with an
:class:`~dpop_middleware.Outcome` (``outcome``, ``reason``, ``status``, ``scheme``). These classes
are such hooks; each needs its optional extra and says so clearly if it is missing::

    metrics = PrometheusMetrics()                   # pip install 'dpop-middleware[prometheus]'
    verifier = DPoPVerifier(validator, on_outcome=metrics)

    metrics = OpenTelemetryMetrics()                # pip install 'dpop-middleware[opentelemetry]'

One counter, labelled by ``outcome`` (``accepted``, ``anonymous``, ``rejected``, ``reported``,
``fail_open``), ``reason`` (a stable code such as ``ok``, ``replayed``, ``token_expired``,
``replay_store_unavailable``) and ``scheme`` (``DPoP``, ``Bearer`` or ``none``). Reason codes come
from a fixed set in the library, never from request data, so label cardinality stays bounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .verifier import Outcome

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from prometheus_client import CollectorRegistry

__all__ = ["OpenTelemetryMetrics", "PrometheusMetrics"]

_DESCRIPTION = "DPoP-authenticated requests by outcome, reason code and scheme"


def _missing(what: str, package: str, extra: str) -> ImportError:
    return ImportError(f"{what} needs the {package} package: pip install 'dpop-middleware[{extra}]'")


def _scheme(scheme: str | None) -> str:
    return scheme or "none"


class PrometheusMetrics:
    """An ``on_outcome`` hook backed by a ``prometheus_client.Counter``.

    The counter is exposed as ``<name>_total`` (default ``dpop_requests_total``) with the labels
    ``outcome``, ``reason`` and ``scheme``. ``registry`` defaults to prometheus-client's global
    registry; pass your own (tests, several apps in one process). Build one per registry: a second
    counter of the same name in the same registry is refused by prometheus-client. Under gunicorn,
    prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) aggregates the workers.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, name: str = "dpop_requests") -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            raise _missing("PrometheusMetrics", "prometheus-client", "prometheus") from exc
        self.counter = prometheus_client.Counter(
            name,
            _DESCRIPTION,
            ("outcome", "reason", "scheme"),
            registry=registry if registry is not None else prometheus_client.REGISTRY,
        )

    def __call__(self, outcome: Outcome) -> None:
        """Count one request (the verifier's ``on_outcome`` hook)."""
        self.counter.labels(outcome.outcome, outcome.reason, _scheme(outcome.scheme)).inc()

    def fail_open(self, store_reason: str) -> None:
        """Count a request let through by a fail-open replay store (its ``on_fail_open`` hook)."""
        self.counter.labels("fail_open", store_reason, "DPoP").inc()


class OpenTelemetryMetrics:
    """An ``on_outcome`` hook backed by an OpenTelemetry counter (``opentelemetry-api``).

    The counter (default ``dpop.requests``, unit ``{request}``) carries the attributes
    ``dpop.outcome``, ``dpop.reason`` and ``dpop.scheme``. Give a ``meter`` or a ``meter_provider``;
    by default the global provider is used, so whatever SDK and exporter the application installs
    (or none: the API is then a no-op) receives the data.
    """

    def __init__(
        self,
        meter: Meter | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        name: str = "dpop.requests",
    ) -> None:
        try:
            from opentelemetry import metrics as otel_metrics
        except ImportError as exc:
            raise _missing("OpenTelemetryMetrics", "opentelemetry-api", "opentelemetry") from exc
        if meter is None:
            from . import __version__

            meter = otel_metrics.get_meter("dpop_middleware", __version__, meter_provider=meter_provider)
        self.counter = meter.create_counter(name, unit="{request}", description=_DESCRIPTION)

    def __call__(self, outcome: Outcome) -> None:
        """Count one request (the verifier's ``on_outcome`` hook)."""
        self.counter.add(
            1,
            {"dpop.outcome": outcome.outcome, "dpop.reason": outcome.reason, "dpop.scheme": _scheme(outcome.scheme)},
        )

    def fail_open(self, store_reason: str) -> None:
        """Count a request let through by a fail-open replay store (its ``on_fail_open`` hook)."""
        self.counter.add(1, {"dpop.outcome": "fail_open", "dpop.reason": store_reason, "dpop.scheme": "DPoP"})
