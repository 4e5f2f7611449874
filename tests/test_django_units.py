"""Django adapter details: settings, system checks, decorators and path rules, the cache store, Host
handling, the async path and the DRF pieces."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from django.core.cache.backends.base import BaseCache
from django.core.checks import run_checks
from django.test import AsyncClient, Client, RequestFactory
from django_app.harness import django_settings, ensure_django
from fakes import FakeReplayStore, TestClock
from rest_framework import exceptions
from rest_framework.request import Request
from servers import redis_server

from dpop_middleware import DPoPVerifier, JWTAccessTokenValidator, MemoryReplayStore, NonceKeyring
from dpop_middleware.client import DPoPKey
from dpop_middleware.django import DjangoCacheReplayStore, DPoPMiddleware, dpop_exempt, dpop_required, get_verifier
from dpop_middleware.django.checks import check_dpop_settings
from dpop_middleware.django.drf import DPoPAuthentication, DPoPRejected, DPoPUser, dpop_exception_handler
from dpop_middleware.testing import TestIssuer, dpop_headers

ensure_django()

ISSUER = TestIssuer(audience="https://api.test")
JWT_SETTINGS = {"ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks}
BASE = "http://testserver"


def call(path: str, *, key: DPoPKey | None = None, scope: str = "read", **extra: str) -> Any:
    key = key or DPoPKey.generate()
    headers = dpop_headers(key, "GET", BASE + path, ISSUER.token(key.jkt, scope=scope))
    return Client().get(path, HTTP_AUTHORIZATION=headers["Authorization"], HTTP_DPOP=headers["DPoP"], **extra)


def ids(messages: list[Any]) -> list[str]:
    return sorted(m.id for m in messages)


# -- settings ---------------------------------------------------------------------------------


def test_settings_build_and_override() -> None:
    with django_settings(JWT_SETTINGS):
        first = get_verifier()
        assert isinstance(first.token_validator, JWTAccessTokenValidator)
        assert isinstance(first.replay_store, MemoryReplayStore)
        assert get_verifier() is first  # built once, kept
        assert call("/protected").status_code == 200
    keyring = {"k1": "0123456789abcdef0123"}
    with django_settings({**JWT_SETTINGS, "MODE": "allow_bearer", "MAX_AGE": 30, "NONCE_KEYRING": keyring}):
        second = get_verifier()
        assert second is not first
        assert second.config.mode.value == "allow_bearer"
        assert second.config.max_age == 30
        assert isinstance(second.config.nonce_keyring, NonceKeyring)


def test_dotted_paths_for_validator_and_store() -> None:
    dpop = {"TOKEN_VALIDATOR": "test_django_units.ISSUER_VALIDATOR", "REPLAY_STORE": "fakes.FakeReplayStore"}
    with django_settings(dpop):
        verifier = get_verifier()
        assert verifier.token_validator is ISSUER_VALIDATOR
        assert isinstance(verifier.replay_store, FakeReplayStore)
        assert call("/protected").status_code == 200
        assert len(verifier.replay_store.calls) == 1


ISSUER_VALIDATOR = ISSUER.validator()


# -- system checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dpop", "extra", "expected"),
    [
        ({}, {}, ["dpop_middleware.E002"]),
        ({**JWT_SETTINGS, "NOPE": 1}, {}, ["dpop_middleware.E001"]),
        ({**JWT_SETTINGS, "MODE": "sometimes"}, {}, ["dpop_middleware.E001"]),
        ({**JWT_SETTINGS, "EXEMPT_PATHS": ["("]}, {}, ["dpop_middleware.E001"]),
        ({**JWT_SETTINGS, "TOKEN_VALIDATOR": "no.such.module"}, {}, ["dpop_middleware.E001"]),
        ({"VERIFIER": "test_django_units.READY_VERIFIER", "MAX_AGE": 5}, {"DEBUG": True}, ["dpop_middleware.E001"]),
        ({"VERIFIER": "test_django_units.READY_VERIFIER"}, {"DEBUG": True}, []),
        (JWT_SETTINGS, {}, ["dpop_middleware.W001"]),
        (JWT_SETTINGS, {"DEBUG": True}, []),
        ({**JWT_SETTINGS, "REPLAY_STORE": "django-cache"}, {}, ["dpop_middleware.W002"]),
        ({**JWT_SETTINGS, "REPLAY_STORE": "django-cache", "REPLAY_CACHE_ALIAS": "x"}, {}, ["dpop_middleware.E003"]),
        (
            {**JWT_SETTINGS, "REPLAY_STORE": "django-cache"},
            {"CACHES": {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}},
            ["dpop_middleware.E004"],
        ),
        (
            {**JWT_SETTINGS, "REPLAY_STORE": "django-cache"},
            {
                "CACHES": {
                    "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/tmp/x"}
                }
            },
            ["dpop_middleware.W003"],
        ),
        (
            {**JWT_SETTINGS, "REPLAY_STORE": "django-cache"},
            {
                "CACHES": {
                    "default": {
                        "BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": "redis://127.0.0.1:1",
                    }
                }
            },
            [],
        ),
        ({**JWT_SETTINGS, "NONCE_POLICY": "always"}, {"DEBUG": True}, ["dpop_middleware.W004"]),
        ({**JWT_SETTINGS, "MODE": "report_only"}, {}, ["dpop_middleware.W001", "dpop_middleware.W005"]),
    ],
)
def test_system_checks(dpop: dict[str, Any], extra: dict[str, Any], expected: list[str]) -> None:
    with django_settings(dpop, **extra):
        assert ids(check_dpop_settings()) == expected


READY_VERIFIER = DPoPVerifier(ISSUER.validator())


def test_checks_are_registered() -> None:
    with django_settings({}):
        assert "dpop_middleware.E002" in ids(run_checks(tags=["security"]))


# -- decorators and path rules ----------------------------------------------------------------


def test_decorators_keep_the_view() -> None:
    async def view(request: Any) -> None: ...

    # required/optional return a guard (issue 19 §2: a view the middleware never saw is refused),
    # which keeps the view's kind and carries the mark; exempt returns the view itself.
    guarded = dpop_required(view)
    assert guarded.__wrapped__ is view  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(guarded)
    assert guarded.dpop_policy.mode == "required"  # type: ignore[attr-defined]
    assert dpop_required(scopes="a b")(view).dpop_policy.scopes == ("a", "b")  # type: ignore[attr-defined]
    assert dpop_exempt(view) is view
    assert asyncio.iscoroutinefunction(dpop_exempt(view))
    assert view.dpop_policy.mode == "exempt"  # type: ignore[attr-defined]


def test_default_exempt_is_opt_in() -> None:
    with django_settings({**JWT_SETTINGS, "DEFAULT": "exempt", "REQUIRED_PATHS": [r"^/api/"]}):
        assert Client().get("/protected").json() == {"anonymous": True}
        assert Client().get("/open/unmarked").json() == {"anonymous": True}
        assert Client().get("/api/unmarked").status_code == 401
        assert Client().get("/scoped").status_code == 401  # the decorator still applies
        assert Client().get("/async-protected").status_code == 401
        assert call("/async-protected").status_code == 200


def test_path_rules_strictest_first() -> None:
    rules = {"EXEMPT_PATHS": [r"^/open/", r"^/api/"], "REQUIRED_PATHS": [r"^/api/"], "OPTIONAL_PATHS": [r"^/open/"]}
    with django_settings({**JWT_SETTINGS, **rules}):
        assert Client().get("/api/unmarked").status_code == 401  # required beats exempt
        assert Client().get("/open/unmarked").json() == {"anonymous": True}  # optional beats exempt
        bad = Client().get("/open/unmarked", HTTP_AUTHORIZATION="DPoP abc", HTTP_DPOP="x.y.z")
        assert bad.status_code == 401  # optional still rejects bad credentials
        assert Client().get("/health").status_code == 200  # the view's mark beats the default


def test_class_based_view_scopes() -> None:
    with django_settings(JWT_SETTINGS):
        denied = call("/scoped-class")
        assert denied.status_code == 403
        assert 'scope="write"' in denied["WWW-Authenticate"]
        assert call("/scoped-class", scope="read write").status_code == 200


# -- Host header ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["bad host", "evil.example.com", "a:b:c", "[::1"])
@pytest.mark.parametrize("path", ["/protected", "/drf/protected"])
def test_bad_host_is_a_400_challenge(host: str, path: str) -> None:
    with django_settings(JWT_SETTINGS, middleware=path == "/protected"):
        resp = call(path, HTTP_HOST=host)
        assert resp.status_code == 400
        assert resp["WWW-Authenticate"].startswith('DPoP error="invalid_request"')
        assert resp["Cache-Control"] == "no-store"


def test_django_proxy_settings_are_honoured() -> None:
    extra = {"USE_X_FORWARDED_HOST": True, "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")}
    with django_settings(JWT_SETTINGS, **extra):
        key = DPoPKey.generate()
        headers = dpop_headers(key, "GET", "https://api.example.com/protected", ISSUER.token(key.jkt))
        resp = Client().get(
            "/protected",
            HTTP_X_FORWARDED_HOST="api.example.com",
            HTTP_X_FORWARDED_PROTO="https",
            HTTP_AUTHORIZATION=headers["Authorization"],
            HTTP_DPOP=headers["DPoP"],
        )
        assert resp.status_code == 200, resp.content


def test_public_url_wins() -> None:
    with django_settings({**JWT_SETTINGS, "PUBLIC_URL": "https://api.example.com/v1"}):
        key = DPoPKey.generate()
        headers = dpop_headers(key, "GET", "https://api.example.com/v1/protected", ISSUER.token(key.jkt))
        resp = Client().get("/protected", HTTP_AUTHORIZATION=headers["Authorization"], HTTP_DPOP=headers["DPoP"])
        assert resp.status_code == 200


def test_raw_uri_keeps_the_path_as_sent() -> None:
    # /prot%65cted decodes to /protected: the proof names the encoded form, RAW_URI carries it.
    with django_settings(JWT_SETTINGS):
        key = DPoPKey.generate()
        headers = dpop_headers(key, "GET", BASE + "/prot%65cted", ISSUER.token(key.jkt))
        resp = Client().get(
            "/protected",
            RAW_URI="/prot%65cted?x=1",
            HTTP_AUTHORIZATION=headers["Authorization"],
            HTTP_DPOP=headers["DPoP"],
        )
        assert resp.status_code == 200, resp.content


# -- async: no thread hop ----------------------------------------------------------------------


def test_middleware_modes() -> None:
    async def async_view(request: Any) -> None: ...

    def sync_view(request: Any) -> None: ...

    async_mw = DPoPMiddleware(async_view)
    assert asyncio.iscoroutinefunction(async_mw)
    assert asyncio.iscoroutinefunction(async_mw.process_view)
    sync_mw = DPoPMiddleware(sync_view)
    assert not asyncio.iscoroutinefunction(sync_mw)
    assert not asyncio.iscoroutinefunction(sync_mw.process_view)


async def test_async_path_uses_aauthenticate() -> None:
    verifier = DPoPVerifier(ISSUER.validator())

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sync verifier must not run under ASGI")

    verifier.authenticate = no_sync  # type: ignore[method-assign]
    key = DPoPKey.generate()
    with django_settings({"VERIFIER": verifier}):
        for path in ("/protected", "/async-protected"):
            headers = dpop_headers(key, "GET", BASE + path, ISSUER.token(key.jkt))
            resp = await AsyncClient().get(path, headers=headers)
            assert resp.status_code == 200, resp.content
            assert resp.json()["jkt"] == key.jkt


# -- fresh nonces on successful responses -------------------------------------------------------


@pytest.mark.parametrize(("path", "middleware"), [("/protected", True), ("/drf/protected", False)])
def test_fresh_nonce_on_success(path: str, middleware: bool) -> None:
    clock = TestClock(time.time())
    keyring = NonceKeyring({"k1": b"0123456789abcdef0123"})
    verifier = DPoPVerifier(ISSUER.validator(), clock=clock, nonce_policy="always", nonce_keyring=keyring)
    key = DPoPKey.generate()
    token = ISSUER.token(key.jkt)
    with django_settings({"VERIFIER": verifier}, middleware=middleware):
        first = dpop_headers(key, "GET", BASE + path, token)
        challenge = Client().get(path, HTTP_AUTHORIZATION=first["Authorization"], HTTP_DPOP=first["DPoP"])
        assert challenge.status_code == 401
        nonce = challenge["DPoP-Nonce"]
        clock.advance(keyring.step_seconds)  # one step later: the nonce is still valid, but not current
        later = dpop_headers(key, "GET", BASE + path, token, nonce=nonce, iat=clock())
        resp = Client().get(path, HTTP_AUTHORIZATION=later["Authorization"], HTTP_DPOP=later["DPoP"])
        assert resp.status_code == 200, resp.content
        assert resp["DPoP-Nonce"] and resp["DPoP-Nonce"] != nonce


# -- Django cache replay store -------------------------------------------------------------------


class BrokenCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def add(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("cache down")


def test_cache_store_locmem_end_to_end() -> None:
    with django_settings({**JWT_SETTINGS, "REPLAY_STORE": "django-cache"}):
        verifier = get_verifier()
        assert isinstance(verifier.replay_store, DjangoCacheReplayStore)
        key = DPoPKey.generate()
        headers = dpop_headers(key, "GET", BASE + "/protected", ISSUER.token(key.jkt))
        meta = {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}
        assert Client().get("/protected", **meta).status_code == 200
        replay = Client().get("/protected", **meta)
        assert replay.status_code == 401
        assert 'error="invalid_dpop_proof"' in replay["WWW-Authenticate"]


def test_cache_store_down_is_503() -> None:
    caches = {"default": {"BACKEND": "test_django_units.BrokenCache"}}
    with django_settings({**JWT_SETTINGS, "REPLAY_STORE": "django-cache"}, CACHES=caches):
        resp = call("/protected")
        assert resp.status_code == 503
        assert resp["Retry-After"]
        assert "WWW-Authenticate" not in resp


def test_cache_store_on_real_redis() -> None:
    with redis_server() as port:
        caches = {
            "replay": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}",
            }
        }
        dpop = {
            **JWT_SETTINGS,
            "REPLAY_STORE": "django-cache",
            "REPLAY_CACHE_ALIAS": "replay",
            "REPLAY_KEY_PREFIX": "t:",
        }
        with django_settings(dpop, CACHES={**caches, "default": caches["replay"]}, DEBUG=False):
            assert check_dpop_settings() == []
            store = get_verifier().replay_store
            assert store.add_if_absent(b"\x01" * 32, 0.2) is True
            assert store.add_if_absent(b"\x01" * 32, 0.2) is False
            assert store.add_if_absent(b"\x02" * 32, 60) is True
            assert call("/protected").status_code == 200


# -- DRF pieces ------------------------------------------------------------------------------------


def drf_request(**meta: str) -> Request:
    return Request(RequestFactory().get("/drf/protected", **meta))


def test_drf_steps_aside_for_other_schemes() -> None:
    with django_settings(JWT_SETTINGS, middleware=False):
        auth = DPoPAuthentication()
        assert auth.authenticate(drf_request()) is None
        assert auth.authenticate(drf_request(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")) is None
        # required mode: a Bearer token is refused here, never left to a later Bearer class (issue 19 §1.9)
        with pytest.raises(DPoPRejected) as caught:
            auth.authenticate(drf_request(HTTP_AUTHORIZATION="Bearer abc"))
        assert caught.value.status_code == 401
        with pytest.raises(DPoPRejected) as caught:  # a proof is ours to judge, whatever the scheme
            auth.authenticate(drf_request(HTTP_AUTHORIZATION="Bearer abc", HTTP_DPOP="x.y.z"))
        assert caught.value.status_code == 400
        with pytest.raises(DPoPRejected) as caught:
            auth.authenticate(drf_request(HTTP_AUTHORIZATION="DPoP abc", HTTP_DPOP="x.y.z"))
        assert caught.value.status_code == 401
        assert 'error="invalid_dpop_proof"' in caught.value.auth_header
        assert auth.authenticate_header(drf_request()).startswith('DPoP algs="')
    with django_settings({**JWT_SETTINGS, "MODE": "allow_bearer"}, middleware=False):
        user, principal = DPoPAuthentication().authenticate(
            drf_request(HTTP_AUTHORIZATION=f"Bearer {ISSUER.token(None)}")
        )  # type: ignore[misc]
        assert principal.scheme == "Bearer"
        assert isinstance(user, DPoPUser) and user.username == "alice"


def make_user(principal: Any) -> str:
    return f"user:{principal.subject}"


def test_drf_user() -> None:
    with django_settings(JWT_SETTINGS, middleware=False):
        assert call("/drf/whoami").json() == {"user": "alice", "authenticated": True}
    with django_settings({**JWT_SETTINGS, "DRF_USER": "test_django_units.make_user"}, middleware=False):
        request = drf_request(**_proof_meta("/drf/protected"))
        user, _principal = DPoPAuthentication().authenticate(request)  # type: ignore[misc]
        assert user == "user:alice"


def _proof_meta(path: str) -> dict[str, str]:
    key = DPoPKey.generate()
    headers = dpop_headers(key, "GET", BASE + path, ISSUER.token(key.jkt))
    return {"HTTP_AUTHORIZATION": headers["Authorization"], "HTTP_DPOP": headers["DPoP"]}


def test_drf_exception_handler() -> None:
    with django_settings(
        {"VERIFIER": DPoPVerifier(ISSUER.validator(), replay_store=FakeReplayStore("down"))}, middleware=False
    ):
        django_request = RequestFactory().get("/drf/protected")
        django_request._dpop_response_headers = (("DPoP-Nonce", "fresh"),)  # type: ignore[attr-defined]
        context = {"request": Request(django_request)}
        other = dpop_exception_handler(exceptions.ValidationError({"x": ["bad"]}), context)
        assert other.status_code == 400 and other["DPoP-Nonce"] == "fresh"
        unauth = exceptions.NotAuthenticated()
        unauth.auth_header = 'DPoP algs="ES256"'
        challenged = dpop_exception_handler(unauth, context)
        assert challenged["Cache-Control"] == "no-store"
        assert dpop_exception_handler(RuntimeError("boom"), context) is None
        down = Client().get("/drf/protected", **_proof_meta("/drf/protected"))
        assert down.status_code == 503 and down["Retry-After"] and "WWW-Authenticate" not in down
