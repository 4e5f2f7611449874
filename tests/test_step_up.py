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


@pytest.mark.parametrize("auth_time", [10**400, -(10**400), 1e308 * 10, 10**30])
def test_an_auth_time_no_clock_can_hold_is_too_old_not_a_crash(auth_time: Any) -> None:
    with pytest.raises(InsufficientUserAuthenticationError) as caught:
        require_authentication(principal(acr="urn:mfa", auth_time=auth_time), StepUp(max_age=300), NOW)
    assert caught.value.reason == "auth_too_old"


def test_an_auth_time_in_the_future_counts_within_the_clock_skew_only() -> None:
    step_up = StepUp(max_age=300)
    require_authentication(principal(auth_time=NOW + 30), step_up, NOW, leeway=60)
    with pytest.raises(InsufficientUserAuthenticationError):
        require_authentication(principal(auth_time=NOW + 61), step_up, NOW, leeway=60)


def test_a_huge_integer_auth_time_in_a_real_token_is_a_401_even_in_report_only() -> None:
    from dpop_middleware.client import DPoPKey
    from dpop_middleware.core.request import RequestInfo
    from dpop_middleware.testing import dpop_headers

    key, url = DPoPKey.generate(), "https://api.test/admin"
    for mode, outcome in (("required", "rejected"), ("report_only", "reported")):
        verifier = DPoPVerifier(ISSUER.validator(), mode=mode)
        token = ISSUER.token(key.jkt, acr="urn:mfa", auth_time=int("9" * 400))  # valid JSON, no float holds it
        request = RequestInfo("GET", url, list(dpop_headers(key, "GET", url, token).items()))
        result = verifier.authenticate(request, step_up=StepUp(("urn:mfa",), 300))  # must not raise
        assert result.outcome == outcome
        if mode == "required":
            assert result.rejection is not None and result.rejection.status == 401


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: StepUp("urn:mfa"), TypeError),  # a string would make ``in`` a substring test
        (lambda: StepUp(["urn:mfa"]), TypeError),  # type: ignore[arg-type]
        (lambda: StepUp(("urn:mfa urn:hw",)), TypeError),
        (lambda: StepUp(("",)), TypeError),
        (lambda: StepUp(max_age="300"), ValueError),  # type: ignore[arg-type]
        (lambda: StepUp(max_age=10**5000), ValueError),
        (lambda: StepUp(max_age=-1), ValueError),
    ],
)
def test_a_step_up_built_directly_is_checked_too(build: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()


def test_a_substring_of_an_accepted_acr_is_not_accepted() -> None:
    for acr in ("mfa", "urn:", "", "urn:mfa "):
        with pytest.raises(InsufficientUserAuthenticationError):
            require_authentication(principal(acr=acr), StepUp(("urn:mfa",)), NOW)


def test_an_anonymous_request_gets_a_plain_challenge_not_an_error_code() -> None:
    verifier = DPoPVerifier(ISSUER.validator(), clock=lambda: NOW)
    result = verifier.step_up(None, StepUp.create("urn:mfa"))
    assert result.rejection is not None and result.rejection.status == 401
    challenge = dict(result.rejection.headers)["WWW-Authenticate"]
    assert "error=" not in challenge and challenge.startswith("DPoP ")


def test_a_bearer_token_gets_the_step_up_on_the_bearer_challenge() -> None:
    verifier = DPoPVerifier(ISSUER.validator(), mode="allow_bearer", clock=lambda: NOW)
    bearer = DPoPPrincipal("Bearer", {"acr": "urn:pwd"}, jkt=None)
    result = verifier.step_up(bearer, StepUp.create("urn:mfa", 60))
    assert result.rejection is not None
    challenges = [value for name, value in result.rejection.headers if name == "WWW-Authenticate"]
    bearer_challenge, dpop = sorted(challenges)  # "Bearer ..." sorts first
    assert "error=" not in dpop
    assert bearer_challenge.startswith('Bearer error="insufficient_user_authentication"')
    assert 'acr_values="urn:mfa"' in bearer_challenge and 'max_age="60"' in bearer_challenge


@pytest.mark.parametrize("empty", ["", "   ", []])
def test_an_empty_acr_values_on_a_view_is_a_mistake_not_no_demand(empty: Any) -> None:
    from dpop_middleware.core.step_up import step_up_demand

    with pytest.raises(ValueError, match="acr_values is empty"):
        step_up_demand(empty, None, "dpop_required(acr_values=...)")
    assert step_up_demand(None, None, "dpop_required(...)") is None
