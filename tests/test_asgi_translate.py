"""ASGI scope -> RequestInfo translation and the raw ASGI behaviour of ``DPoPMiddleware``.

Driven with hand-made scopes and messages (no framework, no test client), so every ASGI detail is
pinned: both ``root_path`` conventions, ``raw_path``, Host, forwarded headers, WebSocket denial with
and without the ``websocket.http.response`` extension, and pass-through of other scopes.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgi_support import call_asgi, http_scope
from fakes import TestClock

from dpop_middleware import AuthenticationRequired, DPoPVerifier, NonceKeyring, normalize_htu
from dpop_middleware.asgi import Receive, Scope, Send, request_info, route_path
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.origin import ProxySettings
from dpop_middleware.starlette import DPoPMiddleware
from dpop_middleware.testing import TestIssuer, dpop_headers

NO_PROXIES = ProxySettings.create()


# -- translation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/app/items/a b", b"/app/items/a%20b"),  # ASGI spec / uvicorn: path includes root_path
        ("/items/a b", b"/items/a%20b"),  # older servers: path below root_path
        ("/app/items/a b", None),  # no raw_path: the decoded path is re-encoded
        ("/items/a b", None),
    ],
)
def test_both_root_path_conventions_give_the_same_url(path: str, raw_path: bytes | None) -> None:
    info = request_info(http_scope(path, root_path="/app", raw_path=raw_path), NO_PROXIES)
    assert info.url == "http://api.test/app/items/a%20b"
    assert route_path(http_scope(path, root_path="/app")) == "/items/a b"


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/prefix/api/x", b"/prefix/api/x"),  # uvicorn --root-path /prefix, then Mount("/api")
        ("/api/x", b"/api/x"),  # TestClient(root_path="/prefix"), then Mount("/api")
    ],
)
def test_below_a_starlette_mount_both_server_conventions(path: str, raw_path: bytes) -> None:
    scope = http_scope(path, root_path="/prefix/api", raw_path=raw_path)
    scope["app_root_path"] = "/prefix"  # what Mount leaves behind: the server's own root_path
    assert request_info(scope, NO_PROXIES).url == "http://api.test/prefix/api/x"
    assert route_path(scope) == "/x"


def test_root_path_that_only_shares_a_prefix_is_not_stripped() -> None:
    info = request_info(http_scope("/application/x", root_path="/app"), NO_PROXIES)
    assert info.url == "http://api.test/app/application/x"  # old convention: /application/x is below /app


def test_raw_path_keeps_the_clients_encoding() -> None:
    info = request_info(http_scope("/a!b", raw_path=b"/a%21b"), NO_PROXIES)
    assert info.url == "http://api.test/a%21b"
    assert normalize_htu(info.url) != normalize_htu("http://api.test/a!b")


def test_raw_path_with_an_encoded_mount_prefix() -> None:
    scope = http_scope("/my app/x%y", root_path="/my app", raw_path=b"/my%20app/x%25y")
    assert request_info(scope, NO_PROXIES).url == "http://api.test/my%20app/x%25y"


def test_raw_path_that_disagrees_with_path_is_ignored() -> None:
    scope = http_scope("/protected", raw_path=b"/somewhere/else")
    assert request_info(scope, NO_PROXIES).url == "http://api.test/protected"


def test_raw_path_query_is_not_part_of_the_path_and_query_string_is_kept() -> None:
    scope = http_scope("/p", raw_path=b"/p?x=1", query=b"access_token=abc")
    assert request_info(scope, NO_PROXIES).url == "http://api.test/p?access_token=abc"


def test_percent_in_decoded_path_is_escaped() -> None:
    assert request_info(http_scope("/100%"), NO_PROXIES).url == "http://api.test/100%25"


@pytest.mark.parametrize("host", ["evil.test/x", "a@b", "a b", "a?b", "a#b", ""])
def test_unusable_host_makes_an_unmatchable_url(host: str) -> None:
    url = request_info(http_scope(host=host), NO_PROXIES).url
    assert url == "http:///protected"


def test_missing_host_falls_back_to_server_address() -> None:
    assert request_info(http_scope(host=None), NO_PROXIES).url == "http://10.0.0.1:8000/protected"
    scope = http_scope(host=None)
    scope["server"] = ("::1", 80)
    assert request_info(scope, NO_PROXIES).url == "http://[::1]:80/protected"


def test_repeated_header_fields_stay_apart() -> None:
    info = request_info(http_scope(headers=[("DPoP", "a"), ("DPoP", "b")]), NO_PROXIES)
    assert info.header_values("dpop") == ["a", "b"]


FORWARDED = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.test"), ("X-Forwarded-Prefix", "/edge")]


ALL_HEADERS = ("x-forwarded-proto", "x-forwarded-host", "x-forwarded-prefix", "x-forwarded-for", "forwarded")


def test_forwarded_headers_only_from_a_trusted_peer() -> None:
    trusted = ProxySettings.create(["10.0.0.0/8"], trusted_headers=ALL_HEADERS)
    from_proxy = http_scope(headers=FORWARDED, client=("10.1.2.3", 4000))
    from_anyone = http_scope(headers=FORWARDED, client=("203.0.113.9", 4000))
    assert request_info(from_proxy, trusted).url == "https://public.test/edge/protected"
    assert request_info(from_anyone, trusted).url == "http://api.test/protected"
    assert request_info(from_proxy, NO_PROXIES).url == "http://api.test/protected"


def test_only_the_trusted_headers_count_from_a_trusted_peer() -> None:
    """The default: a proxy that sets X-Forwarded-Proto (and -For) but passes the client's
    X-Forwarded-Host/-Prefix and Forwarded through untouched; those stay the client's to choose."""
    trusted = ProxySettings.create(["10.0.0.0/8"])
    spoofed = [*FORWARDED, ("Forwarded", 'proto=http;host="evil.test"')]
    from_proxy = http_scope(headers=spoofed, client=("10.1.2.3", 4000))
    assert request_info(from_proxy, trusted).url == "https://api.test/protected"
    host_only = ProxySettings.create(["10.0.0.0/8"], trusted_headers="X-Forwarded-Host")
    assert request_info(from_proxy, host_only).url == "http://public.test/protected"


def test_repeated_forwarded_fields_are_separate_hops() -> None:
    """Each proxy appends a line; the edge proxy's (first untrusted hop from the right) view counts.

    client (sends its own X-Forwarded-Host: spoofed.test) -> edge 10.0.0.5 (adds public.test)
    -> inner 10.1.2.3 (adds internal.test) -> app.
    """
    trusted = ProxySettings.create(["10.0.0.0/8"], trusted_headers=ALL_HEADERS)
    headers = [
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Forwarded-For", "10.0.0.5"),
        ("X-Forwarded-Host", "spoofed.test"),
        ("X-Forwarded-Host", "public.test"),
        ("X-Forwarded-Host", "internal.test"),
    ]
    info = request_info(http_scope(headers=headers, client=("10.1.2.3", 1)), trusted)
    assert info.url == "http://public.test/protected"


def test_public_url_wins_and_keeps_the_path_below_the_mount() -> None:
    settings = ProxySettings.create(public_url="https://public.test/base")
    scope = http_scope("/app/items", root_path="/app", headers=FORWARDED)
    assert request_info(scope, settings).url == "https://public.test/base/items"


def test_websocket_scope_is_a_get_on_the_http_url() -> None:
    scope = http_scope("/ws", kind="websocket", scheme="wss")
    info = request_info(scope, NO_PROXIES, method="GET")
    assert info.method == "GET"
    assert normalize_htu(info.url) == "https://api.test/ws"


def test_route_path_is_the_literal_path_the_router_matches() -> None:
    """Dot segments stay: Starlette routes /admin/{rest:path} on the literal path, so the path
    rules must see it too (RoutePolicy weighs the normalized reading itself)."""
    assert route_path(http_scope("/health/../admin")) == "/health/../admin"
    assert route_path(http_scope("/app/x/../y", root_path="/app")) == "/x/../y"
    assert route_path(http_scope("/app", root_path="/app")) == "/"


# -- the middleware at the ASGI level --------------------------------------------------------------


class Recorder:
    """A downstream app that records what it was called with."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": [(b"x-app", b"1")]})
            await send({"type": "http.response.body", "body": b""})
        elif scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})


def headers_for(issuer: TestIssuer, key: DPoPKey, url: str, **kw: Any) -> list[tuple[str, str]]:
    return list(dpop_headers(key, "GET", url, issuer.token(key.jkt), **kw).items())


async def test_lifespan_and_unknown_scopes_pass_through_untouched(issuer: TestIssuer) -> None:
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=DPoPVerifier(issuer.validator()))
    lifespan: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    sent = await call_asgi(app, lifespan, [{"type": "lifespan.startup"}])
    assert sent == [{"type": "lifespan.startup.complete"}]
    other: Scope = {"type": "custom.thing"}
    await call_asgi(app, other, [])
    assert inner.scopes[0] is lifespan and inner.scopes[0] == {"type": "lifespan", "asgi": {"version": "3.0"}}
    assert inner.scopes[1] == {"type": "custom.thing"}


async def test_http_success_sets_scope_and_keeps_app_headers(issuer: TestIssuer) -> None:
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=DPoPVerifier(issuer.validator()))
    key = DPoPKey.generate()
    sent = await call_asgi(app, http_scope(headers=headers_for(issuer, key, "http://api.test/protected")), [])
    assert sent[0]["status"] == 204 and (b"x-app", b"1") in sent[0]["headers"]
    assert inner.scopes[0]["dpop"].jkt == key.jkt


async def test_http_rejection_is_the_core_response(issuer: TestIssuer) -> None:
    inner = Recorder()
    verifier = DPoPVerifier(issuer.validator())
    sent = await call_asgi(DPoPMiddleware(inner, verifier=verifier), http_scope(), [])
    assert not inner.scopes
    start, body = sent
    assert start["status"] == 401
    headers = [(k.decode(), v.decode()) for k, v in start["headers"]]
    assert ("www-authenticate", f'DPoP algs="{" ".join(verifier.algs)}"') in headers
    assert ("cache-control", "no-store") in headers
    assert ("content-type", "application/json") in headers
    assert json.loads(body["body"]) == json.loads(verifier.render(AuthenticationRequired()).body)


async def test_dot_segments_do_not_reach_an_exempt_rule(issuer: TestIssuer) -> None:
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=DPoPVerifier(issuer.validator()), exempt_paths=["/health"])
    sent = await call_asgi(app, http_scope("/health/../protected"), [])
    assert sent[0]["status"] == 401
    sent = await call_asgi(app, http_scope("/health/db"), [])
    assert sent[0]["status"] == 204


async def test_websocket_denied_with_http_response_extension(issuer: TestIssuer) -> None:
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=DPoPVerifier(issuer.validator()))
    scope = http_scope("/ws", kind="websocket", scheme="ws", extensions={"websocket.http.response": {}})
    sent = await call_asgi(app, scope, [{"type": "websocket.connect"}])
    assert not inner.scopes
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 401
    assert any(k == b"www-authenticate" and v.startswith(b"DPoP algs=") for k, v in sent[0]["headers"])


async def test_websocket_denied_with_policy_close_without_extension(issuer: TestIssuer) -> None:
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=DPoPVerifier(issuer.validator()))
    scope = http_scope("/ws", kind="websocket", scheme="wss")
    sent = await call_asgi(app, scope, [{"type": "websocket.connect"}])
    assert not inner.scopes
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "DPoP authentication failed"}]


async def test_websocket_accepted_with_proof_for_http_url_and_nonce_on_accept(issuer: TestIssuer) -> None:
    clock = TestClock(time.time())
    keyring = NonceKeyring({"k1": b"0123456789abcdef0123"})
    verifier = DPoPVerifier(issuer.validator(), nonce_policy="always", nonce_keyring=keyring, clock=clock)
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=verifier)
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    # A client signs the https URL (or wss: both normalize alike) of the upgrade, with htm GET.
    nonce = keyring.issue(clock.now)
    clock.advance(keyring.step_seconds)  # the nonce is now from the previous step: a fresh one is due
    proof = dpop_headers(key, "GET", "https://api.test/ws", token, nonce=nonce, iat=clock.now)
    scope = http_scope("/ws", kind="websocket", scheme="wss", headers=list(proof.items()))
    sent = await call_asgi(app, scope, [{"type": "websocket.connect"}])
    assert inner.scopes[0]["dpop"].jkt == key.jkt
    accept = sent[0]
    assert accept["type"] == "websocket.accept"
    assert (b"x-app", b"1") in accept["headers"]
    assert (b"dpop-nonce", keyring.issue(clock.now).encode()) in accept["headers"]


async def test_websocket_proof_with_wrong_htm_is_refused(issuer: TestIssuer) -> None:
    inner = Recorder()
    app = DPoPMiddleware(inner, verifier=DPoPVerifier(issuer.validator()))
    key = DPoPKey.generate()
    proof = dpop_headers(key, "POST", "ws://api.test/ws", issuer.token(key.jkt))
    scope = http_scope("/ws", kind="websocket", scheme="ws", headers=list(proof.items()))
    sent = await call_asgi(app, scope, [{"type": "websocket.connect"}])
    assert not inner.scopes and sent[0]["code"] == 1008
