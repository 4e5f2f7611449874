"""RFC 9470 step-up: the core rule (``acr`` among the route's values, ``auth_time`` within ``max_age``),
its challenge, and :meth:`DPoPVerifier.step_up` (logged, counted, report_only honoured)."""

from __future__ import annotations

from typing import Any

import pytest

from dpop_middleware import DPoPVerifier
from dpop_middleware.core.binding import DPoPPrincipal
from dpop_middleware.core.errors import InsufficientUserAuthenticationError
from dpop_middleware.core.step_up import StepUp, require_authentication
from dpop_middleware.testing import TestIssuer

NOW = 1_800_000_000.0
ISSUER = TestIssuer(audience="https://api.test")


def principal(**claims: Any) -> DPoPPrincipal:
    return DPoPPrincipal("DPoP", claims, jkt="k")


@pytest.mark.parametrize(
    ("claims", "step_up"),
    [
        ({"acr": "urn:mfa"}, StepUp(("urn:mfa", "urn:hw"))),
        ({"auth_time": NOW - 300}, StepUp(max_age=300)),
        ({"acr": "urn:hw", "auth_time": NOW}, StepUp(("urn:hw",), 0)),
        ({}, StepUp()),  # no demand
    ],
)
def test_tokens_that_meet_the_demand_pass(claims: dict[str, Any], step_up: StepUp) -> None:
    require_authentication(principal(**claims), step_up, NOW)


@pytest.mark.parametrize(
    ("claims", "step_up", "reason"),
    [
        ({"acr": "urn:pwd"}, StepUp(("urn:mfa",)), "acr_not_accepted"),
        ({}, StepUp(("urn:mfa",)), "acr_not_accepted"),
        ({"acr": ["urn:mfa"]}, StepUp(("urn:mfa",)), "acr_not_accepted"),  # wrong JSON type: missing
        ({"auth_time": NOW - 301}, StepUp(max_age=300), "auth_too_old"),
        ({}, StepUp(max_age=300), "auth_too_old"),
        ({"auth_time": True}, StepUp(max_age=300), "auth_too_old"),
        ({"auth_time": "1800000000"}, StepUp(max_age=300), "auth_too_old"),
        ({"auth_time": float("nan")}, StepUp(max_age=300), "auth_too_old"),
    ],
)
def test_tokens_that_do_not_are_refused(claims: dict[str, Any], step_up: StepUp, reason: str) -> None:
    with pytest.raises(InsufficientUserAuthenticationError) as caught:
        require_authentication(principal(**claims), step_up, NOW)
    assert caught.value.reason == reason and caught.value.status == 401


def test_the_challenge_repeats_the_demand() -> None:
    verifier = DPoPVerifier(ISSUER.validator(), clock=lambda: NOW)
    result = verifier.step_up(principal(acr="urn:pwd"), StepUp.create("urn:mfa urn:hw", 600))
    assert result.rejection is not None and result.outcome == "rejected"
    challenge = dict(result.rejection.headers)["WWW-Authenticate"]
    assert challenge.startswith('DPoP error="insufficient_user_authentication"')
    assert 'acr_values="urn:mfa urn:hw"' in challenge and 'max_age="600"' in challenge
    assert verifier.step_up(principal(acr="urn:hw", auth_time=NOW - 10), StepUp.create(["urn:hw"], 600)).rejection is None


def test_report_only_reports_instead_of_refusing() -> None:
    verifier = DPoPVerifier(ISSUER.validator(), mode="report_only", clock=lambda: NOW)
    result = verifier.step_up(principal(), StepUp.create(max_age=60))
    assert result.rejection is None and result.outcome == "reported"


@pytest.mark.parametrize(("acr_values", "max_age"), [([""], None), (["a b"], None), ((), -1), ((), True), ((), 1.5)])
def test_demands_are_checked_when_made(acr_values: Any, max_age: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        StepUp.create(acr_values, max_age)
