"""request_info_from_environ: the WSGI environ -> RequestInfo translation shared by Flask and plain WSGI."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import EnvironBuilder

from dpop_middleware import RequestInfo
from dpop_middleware.core.htu import HTUError, normalize_htu
from dpop_middleware.core.origin import FORWARDING_HEADERS, ProxySettings
from dpop_middleware.wsgi import request_info_from_environ

NONE = ProxySettings.create()
LOCAL = ProxySettings.create(["127.0.0.1"], trusted_headers=FORWARDING_HEADERS)  # a proxy that sets them all
LOCAL_DEFAULT = ProxySettings.create(["127.0.0.1"])  # believes X-Forwarded-For/-Proto only


def gunicorn_environ(raw: str, script_name: str = "", path_info: str | None = None, **extra: Any) -> dict[str, Any]:
    """An environ shaped like gunicorn's: RAW_URI is the whole request target, query included."""
    path, _, query = raw.partition("?")
    if path_info is None:
        from urllib.parse import unquote

        path_info = unquote(path, encoding="latin-1")[len(script_name) :]
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": "http",
        "RAW_URI": raw,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "api.test",
    }
    env.update(extra)
    return env


def info(env: dict[str, Any], settings: ProxySettings = NONE) -> RequestInfo:
    return request_info_from_environ(env, settings)


def test_plain_request() -> None:
    env = EnvironBuilder(path="/protected", base_url="http://api.test", query_string="a=1").get_environ()
    request = info(env)
    assert request.method == "GET"
    assert request.url == "http://api.test/protected?a=1"


def test_headers_are_pairs_with_dashed_lowercase_names() -> None:
    env = EnvironBuilder(path="/", headers=[("DPoP", "a"), ("DPoP", "b"), ("Authorization", "DPoP t")]).get_environ()
    request = info(env)
    # The server merged the repeated field; the core sees the comma and refuses it.
    assert request.header_values("dpop") == ["a, b"]
    assert request.header_values("authorization") == ["DPoP t"]


def test_werkzeug_raw_uri_without_script_root_keeps_escapes() -> None:
    env = EnvironBuilder(path="/a%2Fb/caf%C3%A9", base_url="http://api.test/app").get_environ()
    assert env["RAW_URI"] == "/a%2Fb/caf%C3%A9"  # werkzeug leaves the mount out of RAW_URI
    assert info(env).url == "http://api.test/app/a%2Fb/caf%C3%A9"


@pytest.mark.parametrize(
    ("raw", "script_name", "expected"),
    [
        ("/api/protected?x=1", "/api", "http://api.test/api/protected?x=1"),
        ("/api/a%2Fb", "/api", "http://api.test/api/a%2Fb"),
        ("/a%2fb", "", "http://api.test/a%2fb"),
        ("/sp%20ace/%7Euser", "", "http://api.test/sp%20ace/%7Euser"),
        ("/%E2%82%AC", "", "http://api.test/%E2%82%AC"),
    ],
)
def test_gunicorn_raw_uri(raw: str, script_name: str, expected: str) -> None:
    assert info(gunicorn_environ(raw, script_name)).url == expected


def test_raw_non_ascii_bytes_are_percent_encoded() -> None:
    # A server that accepts raw UTF-8 in the request line hands it over as latin-1 characters.
    raw = "/café".encode().decode("latin-1")
    assert info(gunicorn_environ(raw)).url == "http://api.test/caf%C3%A9"


def test_without_raw_uri_path_info_is_re_encoded_per_pep3333() -> None:
    env = gunicorn_environ("/x", path_info="/a b/€".encode().decode("latin-1"), SCRIPT_NAME="/m ount")
    del env["RAW_URI"]
    assert info(env).url == "http://api.test/m%20ount/a%20b/%E2%82%AC"


def test_absolute_form_target_falls_back_to_path_info() -> None:
    env = gunicorn_environ("http://api.test/x", path_info="/x")
    assert info(env).url == "http://api.test/x"


def test_raw_target_for_another_path_is_not_trusted() -> None:
    # Issue 20 item 4: one rule for every adapter (as ASGI's raw_path): the raw target counts only
    # when it is the same path; a rewritten PATH_INFO is re-encoded and an /en/x proof fails closed.
    env = gunicorn_environ("/en/x", path_info="/x")
    assert info(env).url == "http://api.test/x"


def test_server_name_when_no_host_header() -> None:
    env = gunicorn_environ("/x")
    del env["HTTP_HOST"]
    assert info(env).url == "http://127.0.0.1:8000/x"


@pytest.mark.parametrize(
    "host",
    ["evil.example/api/protected?", "evil.example#", "user@api.test", "a b", "api.test\r\nX: y", "api.test:80:80",
     "[zz]", "ÿþ", ""],
)
def test_hostile_host_makes_the_url_unusable(host: str) -> None:
    env = gunicorn_environ("/protected", HTTP_HOST=host)
    if not host:
        env.pop("SERVER_NAME")
    with pytest.raises(HTUError):
        normalize_htu(info(env).url)


@pytest.mark.parametrize("host", ["api.test", "API.test:8443", "[::1]:8000", "127.0.0.1", "xn--caf-dma.example"])
def test_valid_hosts_pass(host: str) -> None:
    normalize_htu(info(gunicorn_environ("/", HTTP_HOST=host)).url)


def test_forwarded_headers_only_from_trusted_peer() -> None:
    env = gunicorn_environ(
        "/api/x", "/api", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="public.example",
        HTTP_X_FORWARDED_PREFIX="/edge",
    )
    assert info(env, LOCAL).url == "https://public.example/edge/api/x"
    assert info(env, NONE).url == "http://api.test/api/x"
    assert info(dict(env, REMOTE_ADDR="198.51.100.7"), LOCAL).url == "http://api.test/api/x"


def test_rfc7239_forwarded() -> None:
    env = gunicorn_environ("/x", HTTP_FORWARDED='for=203.0.113.9;proto=https;host="public.example"')
    assert info(env, LOCAL).url == "https://public.example/x"


def test_only_the_trusted_headers_count_from_a_trusted_peer() -> None:
    """By default the proxy is believed about the scheme (and client address) only: a Host,
    Port, Prefix or Forwarded header it passes through unchanged is whatever the client sent."""
    env = gunicorn_environ(
        "/api/x", "/api", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="evil.example",
        HTTP_X_FORWARDED_PORT="8443", HTTP_X_FORWARDED_PREFIX="/edge",
    )
    assert info(env, LOCAL_DEFAULT).url == "https://api.test/api/x"
    forwarded = gunicorn_environ("/x", HTTP_FORWARDED='for=203.0.113.9;proto=https;host="evil.example"')
    assert info(forwarded, LOCAL_DEFAULT).url == "http://api.test/x"
    host_too = ProxySettings.create(["127.0.0.1"], trusted_headers="x-forwarded-proto, x-forwarded-host")
    assert info(env, host_too).url == "https://evil.example/api/x"


def test_public_url_replaces_scheme_host_and_mount() -> None:
    settings = ProxySettings.create(public_url="https://public.example/base/")
    env = gunicorn_environ("/api/a%2Fb?q=1", "/api", HTTP_X_FORWARDED_HOST="evil.example")
    assert info(env, settings).url == "https://public.example/base/a%2Fb?q=1"


def _through_proxy_fix(environ: dict[str, Any], **options: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        return []

    ProxyFix(app, **options)(environ, lambda *a: None)  # type: ignore[arg-type]
    return seen


def test_proxy_fix_values_are_used_once(caplog: pytest.LogCaptureFixture) -> None:
    env = gunicorn_environ(
        "/x", HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="public.example", HTTP_X_FORWARDED_PREFIX="/edge",
    )
    fixed = _through_proxy_fix(env, x_for=1, x_proto=1, x_host=1, x_prefix=1)
    assert fixed["SCRIPT_NAME"] == "/edge"
    # ProxyFix alone: its values count (the prefix it moved into SCRIPT_NAME included).
    assert info(fixed, NONE).url == "https://public.example/edge/x"
    # ProxyFix plus trusted_proxies: forwarded headers are not applied a second time.
    with caplog.at_level(logging.WARNING, logger="dpop_middleware"):
        assert info(fixed, LOCAL).url == "https://public.example/edge/x"
