"""Core pieces of the seams work: CORS preflights, debug diagnostics, report-only warning, allowed hosts."""

from __future__ import annotations

import json
import logging

import pytest

from dpop_middleware.core.origin import ProxySettings, rebuild_url
from dpop_middleware.core.request import is_cors_preflight
from tests.core_support import URL, make_env

PREFLIGHT_HEADERS = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")]


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("OPTIONS", PREFLIGHT_HEADERS, True),
        ("OPTIONS", [("origin", "x"), ("ACCESS-CONTROL-REQUEST-METHOD", "PUT")], True),
        ("OPTIONS", [("Origin", "https://app.example")], False),  # a plain OPTIONS, not a preflight
        ("OPTIONS", [("Access-Control-Request-Method", "POST")], False),
        ("POST", PREFLIGHT_HEADERS, False),  # only OPTIONS is ever a preflight
        ("options", PREFLIGHT_HEADERS, False),  # methods are case-sensitive
    ],
)
def test_is_cors_preflight_needs_options_origin_and_request_method(method, headers, expected):
    assert is_cors_preflight(method, headers) is expected


def _htu_mismatch(debug: bool):
    env = make_env()
    verifier = env.verifier(debug=debug)
    token = env.token()
    proof = env.proof(token, htu="https://other.example.com/v1/items")
    result = verifier.authenticate(env.request(token, proof))
    assert result.rejection is not None
    return result.rejection


def test_debug_rejection_says_expected_and_received_htu():
    rejection = _htu_mismatch(debug=True)
    body = json.loads(rejection.body)
    assert body["dpop_reason"] == "htu_mismatch"
    assert body["dpop_debug"] == {"expected": URL, "received": "https://other.example.com/v1/items"}
    assert URL in body["error_description"]
    # The challenge header is the production one: details go to the body a developer reads.
    challenge = dict(rejection.headers)["WWW-Authenticate"]
    assert "other.example.com" not in challenge


def test_production_rejection_carries_no_diagnostics():
    rejection = _htu_mismatch(debug=False)
    body = json.loads(rejection.body)
    assert body == {"error": "invalid_dpop_proof", "error_description": "DPoP proof htu mismatch"}
    assert b"other.example.com" not in rejection.body


def test_debug_rejection_says_how_far_iat_was_off():
    env = make_env()
    verifier = env.verifier(debug=True)
    token = env.token()
    proof = env.proof(token, iat=int(env.clock.now) - 3600)
    rejection = verifier.authenticate(env.request(token, proof)).rejection
    assert rejection is not None
    assert json.loads(rejection.body)["dpop_debug"] == {"iat_offset": -3600.0}


def test_report_only_verifier_warns_once_at_construction(caplog):
    env = make_env()
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        env.verifier(mode="report_only")
    warnings = [r for r in caplog.records if "report_only" in r.getMessage()]
    assert len(warnings) == 1
    assert "existing authentication in front" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        env.verifier(mode="required")
    assert not [r for r in caplog.records if "report_only" in r.getMessage()]


def _url(host: str, settings: ProxySettings, **kwargs: object) -> str:
    params: dict = {"scheme": "https", "host": host, "root_path": "", "path": "/x", "peer": None, "headers": {}}
    params.update(kwargs)
    return rebuild_url(settings=settings, **params)


@pytest.mark.parametrize(
    ("patterns", "host", "allowed"),
    [
        (["api.example.com"], "api.example.com", True),
        (["api.example.com"], "API.Example.com:8443", True),  # any port unless the pattern pins one
        (["api.example.com"], "api.example.com.", True),
        (["api.example.com"], "other.example.com", False),
        (["api.example.com"], "evil-api.example.com", False),
        ([".example.com"], "example.com", True),
        ([".example.com"], "a.b.example.com:80", True),
        ([".example.com"], "badexample.com", False),
        (["api.example.com:8443"], "api.example.com:8443", True),
        (["api.example.com:8443"], "api.example.com:9443", False),
        (["*"], "anything.test", True),
        (["[::1]"], "[::1]:8000", True),
        (["[::1]"], "[::2]:8000", False),
        ("a.test, b.test", "b.test", True),  # a comma-separated string, as from an environment variable
        ([], "api.example.com", False),  # an empty list allows nothing, as in Django
    ],
)
def test_allowed_hosts_follow_django_semantics(patterns, host, allowed):
    settings = ProxySettings.create(allowed_hosts=patterns)
    assert settings.host_allowed(host) is allowed
    url = _url(host, settings)
    assert (url == f"https://{host}/x") is allowed
    if not allowed:
        assert url == "https:///x"  # an unusable URL: the verifier answers 400 bad_request_url


def test_allowed_hosts_apply_to_a_forwarded_host_too():
    settings = ProxySettings.create(["10.0.0.1"], None, ["x-forwarded-host"], allowed_hosts=["api.example.com"])
    good = _url("internal:8000", settings, peer="10.0.0.1", headers={"x-forwarded-host": ["api.example.com"]})
    bad = _url("internal:8000", settings, peer="10.0.0.1", headers={"x-forwarded-host": ["other.example.com"]})
    assert good == "https://api.example.com/x"
    assert bad == "https:///x"


def test_host_outside_allowed_hosts_is_refused_400_by_the_verifier():
    env = make_env()
    verifier = env.verifier()
    settings = ProxySettings.create(allowed_hosts=["api.example.com"])
    token = env.token()
    url = _url("other.example.com", settings, path="/v1/items")
    proof = env.proof(token, htu="https://other.example.com/v1/items")
    result = verifier.authenticate(env.request(token, proof, url=url))
    assert result.rejection is not None
    assert result.rejection.status == 400
    assert result.rejection.error.reason == "bad_request_url"


def test_allowed_hosts_entries_must_be_strings():
    with pytest.raises(ValueError, match="allowed_hosts"):
        ProxySettings.create(allowed_hosts=["ok.test", 3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "debug", "warns"),
    [
        ({}, False, True),
        ({}, True, False),
        ({"public_url": "https://api.example.com"}, False, False),
        ({"allowed_hosts": ["api.example.com"]}, False, False),
    ],
)
def test_unpinned_host_warning(caplog, kwargs, debug, warns):
    settings = ProxySettings.create(**kwargs)
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        said = settings.warn_if_host_unchecked(debug=debug, names="DPOP_PUBLIC_URL or DPOP_ALLOWED_HOSTS")
    assert said is warns
    messages = [r.getMessage() for r in caplog.records]
    assert bool(messages) is warns
    if warns:
        assert "DPOP_PUBLIC_URL or DPOP_ALLOWED_HOSTS" in messages[0]
