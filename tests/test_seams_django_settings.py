"""Issue 19 §3, Django settings that name their mistakes: every key type-checked (key, type,
choices), environment strings coerced, checks that never crash, validation when the app is ready,
the per-process LocMemCache replay store guarded, and debug diagnostics from Django's DEBUG."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.apps import apps
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django_app.harness import django_settings, ensure_django

from dpop_middleware.client import DPoPKey
from dpop_middleware.core.errors import ReplayStoreUnavailable
from dpop_middleware.django import DjangoCacheReplayStore, get_verifier
from dpop_middleware.django import cache_store as cache_store_module
from dpop_middleware.django.checks import check_dpop_settings
from dpop_middleware.django.conf import build_state, get_state
from dpop_middleware.settings import SETTINGS
from dpop_middleware.testing import TestIssuer, dpop_headers

ensure_django()

ISSUER = TestIssuer(audience="https://api.test")
JWT = {"ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks}
URLS = {"ROOT_URLCONF": "django_app.seams_urls"}
BASE = "http://testserver"
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "seams"}}


def signed(path: str, url: str | None = None) -> dict[str, str]:
    key = DPoPKey.generate()
    headers = dpop_headers(key, "GET", url or BASE + path, ISSUER.token(key.jkt))
    return {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}


def ids(messages: list[Any]) -> list[str]:
    return sorted(m.id for m in messages)


# -- every key type-checked, naming the key and the type ----------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("MAX_AGE", "soon", "DPOP['MAX_AGE'] must be a number of seconds"),
        ("MAX_AGE", [60], "DPOP['MAX_AGE'] must be a number of seconds"),
        ("MODE", "strict", "DPOP['MODE'] must be one of 'required', 'allow_bearer', 'report_only'"),
        ("NONCE_POLICY", "sometimes", "DPOP['NONCE_POLICY'] must be one of"),
        ("DEFAULT", "open", "DPOP['DEFAULT'] must be one of 'required', 'optional', 'exempt'"),
        ("ALGORITHMS", ["HS256"], "DPOP['ALGORITHMS'] must be a list of JWS algorithm names among"),
        ("TRUSTED_PROXIES", ["not-an-ip"], "DPOP['TRUSTED_PROXIES'] must be a list of IP addresses"),
        ("TRUSTED_PROXIES", 10, "DPOP['TRUSTED_PROXIES'] must be a list of IP addresses"),
        ("PUBLIC_URL", "api.example.com", "DPOP['PUBLIC_URL'] must be an absolute http(s) URL"),
        ("MIN_RSA_BITS", 1024, "DPOP['MIN_RSA_BITS'] must be an integer, at least 2048"),
        ("DEBUG", "maybe", "DPOP['DEBUG'] must be a boolean"),
        ("REPLAY_CACHE_ALIAS", 3, "DPOP['REPLAY_CACHE_ALIAS'] must be a non-empty string"),
        ("EXEMPT_PATHS", 3, "DPOP['EXEMPT_PATHS'] must be a list of paths"),
        ("NONCE_KEYRING", {"k1": "short"}, "DPOP['NONCE_KEYRING'] must be a NonceKeyring"),
        ("MAX_AGES", 60, "DPOP['MAX_AGES'] is not a setting; the valid ones are"),
    ],
)
def test_a_bad_value_names_the_key_and_the_type(key: str, value: Any, said: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        build_state({**JWT, key: value})
    assert said in str(caught.value)


def test_lower_case_keys_and_allowed_hosts_are_refused_with_the_reason() -> None:
    with pytest.raises(ImproperlyConfigured, match="upper-case"):
        build_state({**JWT, "mode": "required"})
    with pytest.raises(ImproperlyConfigured, match="project's own ALLOWED_HOSTS"):
        build_state({**JWT, "ALLOWED_HOSTS": ["api.example.com"]})


def test_environment_strings_are_coerced() -> None:
    state = build_state(
        {
            **JWT,
            "ALGORITHMS": "ES256, EdDSA",
            "TRUSTED_PROXIES": "10.0.0.1, 10.0.0.0/8",
            "TRUSTED_HEADERS": "x-forwarded-proto,x-forwarded-host",
            "MAX_AGE": "120",
            "DEBUG": "false",
            "EXEMPT_PATHS": "/health, /metrics",
            "MODE": "allow_bearer",
        }
    )
    config = state.verifier.config
    assert config.algorithms == ("ES256", "EdDSA")
    assert config.max_age == 120.0
    assert config.debug is False
    assert state.routes.exempt_paths == ("/health", "/metrics")
    assert state.proxy.is_trusted("10.1.2.3")


def test_a_bad_setting_stops_the_app_at_ready() -> None:
    config = apps.get_app_config("dpop_middleware")
    with django_settings({**JWT, "MAX_AGE": "soon"}), pytest.raises(ImproperlyConfigured, match=r"DPOP\['MAX_AGE'\]"):
        config.ready()
    with django_settings({"ISSUER": ISSUER.issuer}), pytest.raises(ImproperlyConfigured, match="AUDIENCE"):
        config.ready()
    with django_settings({}):
        config.ready()  # an empty DPOP is left to the system check (E002)


def test_a_bad_setting_stops_the_middleware_when_the_server_loads_it() -> None:
    from dpop_middleware.django import DPoPMiddleware

    with django_settings({**JWT, "MODE": "strict"}), pytest.raises(ImproperlyConfigured, match=r"DPOP\['MODE'\]"):
        DPoPMiddleware(lambda request: None)


def test_override_settings_still_rebuilds_the_verifier() -> None:
    with django_settings({**JWT, "MAX_AGE": 30}):
        assert get_verifier().config.max_age == 30
        with django_settings({**JWT, "MAX_AGE": "45"}):
            assert get_verifier().config.max_age == 45


# -- checks never crash --------------------------------------------------------------------------

HOSTILE: list[Any] = [
    [],
    {},
    ["\ud800"],
    {"keys": [{"kty": ["EC"], "crv": {"x": 1}}]},
    0,
    -1,
    1.5,
    float("nan"),
    True,
    None,
    "",
    "\ud800",
    "no.such.module.Thing",
    10**40,
    object(),
]


# Every key of the Django adapter: the whole table but Flask's ENFORCE_ALL and ALLOWED_HOSTS
# (Django's own ALLOWED_HOSTS applies); see docs/django.md.
KEYS = sorted(set(SETTINGS) - {"enforce_all", "allowed_hosts"})


def test_the_adapter_accepts_exactly_the_documented_keys() -> None:
    from dpop_middleware.django.conf import ACCEPTED

    assert sorted(ACCEPTED) == KEYS


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_checks_never_crash_on_a_hostile_value(key: str, value: Any) -> None:
    with django_settings({**JWT, key.upper(): value}, **URLS):
        messages = check_dpop_settings()
    assert all(isinstance(m, CheckMessage) for m in messages)
    for message in messages:
        if isinstance(message, Error):
            assert message.id in ("dpop_middleware.E001", "dpop_middleware.E002", "dpop_middleware.E003")


@pytest.mark.parametrize(
    "extra",
    [
        {"DPOP": "not a dict"},
        {"DPOP": {1: 2}},
        {"DPOP": {**JWT, "JWKS": {"keys": [{"kty": "EC", "crv": ["P-256"]}]}}},
        {"DPOP": {**JWT, "JWKS": "{not json"}},
        {"DPOP": {**JWT, "REPLAY_STORE": "django-cache"}, "CACHES": {"default": "locmem"}},
        {"DPOP": {**JWT, "REPLAY_STORE": "django-cache"}, "CACHES": ["x"]},
        {"MIDDLEWARE": None},
        {"MIDDLEWARE": "dpop_middleware.django.DPoPMiddleware"},
        {"MIDDLEWARE": [3, None]},
    ],
)
def test_checks_turn_a_hostile_project_setting_into_an_error(extra: dict[str, Any]) -> None:
    extra = dict(extra)
    dpop = extra.pop("DPOP", JWT)
    with django_settings({}, **URLS):
        from django.test.utils import override_settings

        with override_settings(DPOP=dpop, **extra):
            messages = check_dpop_settings()
    assert messages, "each of these is a mistake the checks must report"
    assert any(isinstance(m, Error) for m in messages)


@pytest.mark.parametrize("value", [None, "x", 3, {"DEFAULT_AUTHENTICATION_CLASSES": "x"}, {"DEFAULT_AUTHENTICATION_CLASSES": [1]}])
def test_checks_never_crash_on_a_hostile_rest_framework_setting(value: Any) -> None:
    with django_settings(JWT, REST_FRAMEWORK=value, **URLS):
        messages = check_dpop_settings()
    assert all(isinstance(m, CheckMessage) for m in messages)


def test_a_bad_jwks_is_an_e001_naming_the_key() -> None:
    bad = {**JWT, "JWKS": {"keys": [{"kty": "EC", "crv": ["P-256"]}]}}
    with django_settings(bad):
        messages = check_dpop_settings()
    assert ids(messages) == ["dpop_middleware.E001"]
    assert "DPOP['JWKS']" in messages[0].msg


# -- the Django-cache replay store on a LocMemCache: per process ----------------------------------


class SiblingsFound:
    problem = None

    def has_siblings(self) -> bool:
        return True


def test_locmem_replay_cache_refuses_under_several_processes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cache_store_module, "shared_guard", SiblingsFound)
    with django_settings({**JWT, "REPLAY_STORE": "django-cache"}, CACHES=LOCMEM, **URLS):
        with caplog.at_level(logging.ERROR, "dpop_middleware"):
            first = Client().get("/undecorated", **signed("/undecorated"))
            second = Client().get("/undecorated", **signed("/undecorated"))
    assert first.status_code == second.status_code == 503
    assert first.json()["error"] == "temporarily_unavailable" or first["Retry-After"]
    errors = [r.getMessage() for r in caplog.records if r.name == "dpop_middleware" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "DPOP['REPLAY_STORE']" in errors[0]


def test_locmem_replay_cache_serves_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_store_module, "shared_guard", SiblingsFound)
    allowed = {**JWT, "REPLAY_STORE": "django-cache", "ALLOW_PER_PROCESS_STORE": "true"}
    with django_settings(allowed, CACHES=LOCMEM, **URLS):
        assert Client().get("/undecorated", **signed("/undecorated")).status_code == 200
        assert "dpop_middleware.W002" not in ids(check_dpop_settings())
    with django_settings({**JWT, "REPLAY_STORE": "django-cache"}, CACHES=LOCMEM, **URLS):
        assert "dpop_middleware.W002" in ids(check_dpop_settings())


def test_a_dummy_cache_refuses_to_serve_and_a_locmem_cache_asks_the_guard() -> None:
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with django_settings({**JWT, "REPLAY_STORE": "django-cache"}, CACHES=dummy):
        # A cache that remembers nothing would accept every replay: 503, whatever the guard says.
        with pytest.raises(ReplayStoreUnavailable) as info:
            DjangoCacheReplayStore().add_if_absent(b"k", 5)
        assert info.value.reason == "replay_store_no_memory"
    with django_settings({**JWT, "REPLAY_STORE": "django-cache"}, CACHES=LOCMEM):
        with pytest.raises(ReplayStoreUnavailable):
            DjangoCacheReplayStore(guard=SiblingsFound()).add_if_absent(b"k", 5)  # type: ignore[arg-type]


# -- debug diagnostics from Django's DEBUG ----------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False])
def test_htu_mismatch_says_expected_and_received_only_in_debug(debug: bool) -> None:
    with django_settings(JWT, DEBUG=debug, **URLS):
        assert get_state().verifier.config.debug is debug
        resp = Client().get("/undecorated", **signed("/undecorated", url="https://proxy.example/api/undecorated"))
    assert resp.status_code == 401
    body = resp.json()
    said = "https://proxy.example/api/undecorated" in body["error_description"]
    assert said is debug
    assert ("http://testserver/undecorated" in resp.content.decode()) is debug
    assert ("dpop_debug" in body) is debug


def test_dpop_debug_key_overrides_django_debug() -> None:
    with django_settings({**JWT, "DEBUG": False}, DEBUG=True):
        assert get_state().verifier.config.debug is False
    with django_settings({**JWT, "DEBUG": True}, DEBUG=False):
        assert get_state().verifier.config.debug is True
