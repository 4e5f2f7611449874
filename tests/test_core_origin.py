"""Rebuilding the client's URL behind proxies (pure rules; adapters test their plumbing)."""

from __future__ import annotations

import pytest

from dpop_middleware.core.origin import ProxySettings, rebuild_url
from dpop_middleware.wsgi_environ import credential_headers_from_environ, forwarding_from_environ

ALL_HEADERS = ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix"]
TRUSTED = ProxySettings.create(["10.0.0.0/8", "127.0.0.1"], trusted_headers=ALL_HEADERS)


def url(headers: dict[str, list[str]], peer: str | None = "10.0.0.5", settings: ProxySettings = TRUSTED, **kw: str) -> str:
    base = {"scheme": "http", "host": "internal:8000", "root_path": "", "path": "/items"}
    base.update(kw)
    return rebuild_url(peer=peer, headers=headers, settings=settings, **base)  # type: ignore[arg-type]


def test_no_proxy_uses_request() -> None:
    assert url({}, peer="203.0.113.9") == "http://internal:8000/items"


def test_forwarded_headers_ignored_from_untrusted_peer() -> None:
    headers = {"x-forwarded-proto": ["https"], "x-forwarded-host": ["evil.example"], "forwarded": ["proto=https;host=evil.example"]}
    assert url(headers, peer="203.0.113.9") == "http://internal:8000/items"
    assert url(headers, settings=ProxySettings()) == "http://internal:8000/items"


def test_x_forwarded_from_trusted_peer() -> None:
    headers = {"x-forwarded-proto": ["https"], "x-forwarded-host": ["api.example.com"], "x-forwarded-prefix": ["/v1"]}
    assert url(headers) == "https://api.example.com/v1/items"


def test_x_forwarded_port() -> None:
    headers = {"x-forwarded-proto": ["https"], "x-forwarded-host": ["api.example.com"], "x-forwarded-port": ["8443"]}
    assert url(headers) == "https://api.example.com:8443/items"


def test_forwarded_preferred_and_rightmost_untrusted() -> None:
    headers = {
        "forwarded": ['for=198.51.100.7;proto=https;host="api.example.com", for=10.0.0.9;proto=http;host=lb.internal'],
        "x-forwarded-host": ["ignored.example"],
    }
    # The last hop's client (10.0.0.9) is our own proxy: the edge hop is the one that saw 198.51.100.7.
    assert url(headers) == "https://api.example.com/items"


def test_spoofed_leftmost_entry_is_not_trusted() -> None:
    # The client itself sent "X-Forwarded-Host: evil"; our edge proxy appended its view.
    headers = {"x-forwarded-for": ["6.6.6.6, 198.51.100.7"], "x-forwarded-host": ["evil.example, api.example.com"],
               "x-forwarded-proto": ["http, https"]}
    assert url(headers) == "https://api.example.com/items"


def test_malformed_values_ignored() -> None:
    assert url({"x-forwarded-proto": ["gopher"], "x-forwarded-host": ["a b"]}) == "http://internal:8000/items"
    assert url({"forwarded": ['for="unterminated']}) == "http://internal:8000/items"


def test_public_url_wins() -> None:
    settings = ProxySettings.create(public_url="https://api.example.com/base/")
    assert url({"x-forwarded-host": ["x"]}, settings=settings) == "https://api.example.com/base/items"


def test_ipv6_peer_and_bad_config() -> None:
    settings = ProxySettings.create("::1, 10.0.0.0/8")
    assert settings.is_trusted("::1") and settings.is_trusted("[::1]") and not settings.is_trusted("garbage")
    with pytest.raises(ValueError):
        ProxySettings.create(public_url="api.example.com")
    with pytest.raises(ValueError):
        ProxySettings.create(["not-an-ip"])


@pytest.mark.parametrize("host", ["evil.example/api/protected?", "a b", "x@y", "host#frag", ""])
def test_hostile_host_header_makes_the_url_unusable(host: str) -> None:
    from dpop_middleware.core.htu import HTUError, normalize_htu

    rebuilt = url({}, peer="203.0.113.9", host=host)
    with pytest.raises(HTUError):
        normalize_htu(rebuilt)


def test_only_configured_forwarding_headers_are_believed() -> None:
    """A proxy that sets only X-Forwarded-Proto passes the client's own X-Forwarded-Host/Forwarded through."""
    default = ProxySettings.create(["10.0.0.0/8"])
    headers = {"x-forwarded-proto": ["https"], "x-forwarded-host": ["other-api.example"],
               "forwarded": ["host=other-api.example;proto=http"]}
    assert url(headers, settings=default) == "https://internal:8000/items"
    only_forwarded = ProxySettings.create(["10.0.0.0/8"], trusted_headers="forwarded")
    assert url(headers, settings=only_forwarded) == "http://other-api.example/items"
    with pytest.raises(ValueError):
        ProxySettings.create(["10.0.0.0/8"], trusted_headers=["x-real-ip"])


ENVIRON = {
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_FORWARDED": "proto=https",
    "HTTP_X_FORWARDED_HOST": 42,  # not text: a WSGI environ may hold anything
    "HTTP_AUTHORIZATION": "DPoP abc",
    "HTTP_DPOP": "a.b.c",
    "HTTP_COOKIE": "x=1",
}


def test_forwarding_headers_are_collected_only_when_they_can_be_read() -> None:
    assert forwarding_from_environ(ENVIRON, TRUSTED) == {"x-forwarded-proto": ["https"], "forwarded": ["proto=https"]}
    # Nobody trusted, or a fixed public URL: rebuild_url would read none of them.
    assert forwarding_from_environ(ENVIRON, ProxySettings.create()) == {}
    assert forwarding_from_environ(ENVIRON, ProxySettings.create(["10.0.0.0/8"], public_url="https://api.example")) == {}
    assert TRUSTED.reads_forwarding_headers and not ProxySettings.create().reads_forwarding_headers


def test_only_the_credential_headers_are_copied_from_an_environ() -> None:
    assert credential_headers_from_environ(ENVIRON) == [("authorization", "DPoP abc"), ("dpop", "a.b.c")]
    assert credential_headers_from_environ({"HTTP_DPOP": b"a.b.c"}) == []
