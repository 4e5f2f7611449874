"""Issue 20 item 4: one rule for the URL the client used, in the core, and every adapter agreeing.

One table of (mount prefix, path below it, raw request target) -> the URL path the client used,
driven through :func:`dpop_middleware.core.target.client_paths` and through each adapter's own
translation: a WSGI environ, an ASGI scope, and Django's ``WSGIRequest`` (``RequestFactory``) and
``ASGIRequest``. The decoded paths are given as the bytes the server decoded; each driver hands
them over the way its server does (PEP 3333 latin-1 strings, UTF-8 with U+FFFD, Django's own
decoding). Then the one path-safe table and the one header-folding helper.
"""

from __future__ import annotations

import io
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.test import RequestFactory, override_settings
from django_app.harness import BASE, ensure_django

from dpop_middleware import asgi, starlette
from dpop_middleware.core.fields import fold_fields, list_elements
from dpop_middleware.core.htu import PATH_SAFE, normalize_htu
from dpop_middleware.core.origin import ProxySettings, rebuild_url
from dpop_middleware.core.target import Decoding, client_paths
from dpop_middleware.django import translate
from dpop_middleware.wsgi import request_info_from_environ

ensure_django()

ORIGIN = "http://api.test"
NO_PROXIES = ProxySettings.create()

# (mount prefix, path below it, raw target or None, the path of the URL the client used)
CASES: list[tuple[bytes, bytes, str | None, str]] = [
    (b"", b"/items/42", "/items/42", "/items/42"),
    (b"", b"/a/b", "/a%2Fb", "/a%2Fb"),  # an encoded slash is one segment, as the client sent it
    (b"", b"/a/b/c", "/a%2fb/c", "/a%2fb/c"),
    (b"", b"/x/../y", "/x/../y", "/x/../y"),  # dot segments stay (htu normalization removes them)
    (b"", b"/x/../y", "/x/%2E%2E/y", "/x/%2E%2E/y"),
    (b"", b"/a!b", "/a%21b", "/a%21b"),  # %21 and ! differ for htu: the client's spelling counts
    (b"", "/café".encode(), "/caf%C3%A9", "/caf%C3%A9"),
    (b"", "/café".encode(), "/café".encode().decode("latin-1"), "/caf%C3%A9"),  # raw UTF-8 on the wire
    (b"", b"/100%", "/100%25", "/100%25"),
    (b"", b"/a\nb", "/a%0Ab", "/a%0Ab"),  # a control character stays escaped
    (b"", b"/\xff", "/%FF", "/%FF"),  # not UTF-8: the escape as sent, whatever the server decoded
    (b"/api", b"/a/b", "/api/a%2Fb", "/api/a%2Fb"),  # the raw target carries the mount prefix
    (b"/api", b"/a/b", "/a%2Fb", "/api/a%2Fb"),  # a proxy stripped it: the prefix is mount prefix
    (b"/my app", b"/x", "/my%20app/x", "/my%20app/x"),
    (b"/a!", b"/x", "/a%21/x", "/a%21/x"),  # the prefix as the client spelled it too
    (b"/app", b"", "/app", "/app"),  # the mount point itself
    # Fail closed: the decoded path, encoded again.
    (b"", "/café".encode(), None, "/caf%C3%A9"),
    (b"", b"/a b", None, "/a%20b"),
    (b"", b"/100%", None, "/100%25"),
    (b"/my app", b"/x", None, "/my%20app/x"),
    (b"", b"/a/b", "/a%2Fc", "/a/b"),  # a raw target for another path
    (b"", b"/a/b", "/x/a%2Fb", "/a/b"),  # a prefix that is no part of the mount
    (b"/api", b"/a/b", "/other/a%2Fb", "/api/a/b"),
    (b"", b"/a/b", "http://evil.test/a%2Fb", "/a/b"),  # absolute form: never taken apart
    (b"/api", b"/x", "/api%2Fx", "/api/x"),  # the mount boundary must be a literal "/"
    (b"", b"/en/x", "/x", "/en/x"),  # rewritten in process: the path the app routes
]
IDS = [f"{prefix!r}+{below!r}<-{raw!r}" for prefix, below, raw, _ in CASES]

# How each server decodes the bytes of a path for the application.
DECODED: dict[Decoding, Callable[[bytes], str]] = {
    "latin-1": lambda value: value.decode("latin-1"),
    "utf-8": lambda value: value.decode("utf-8", "replace"),
    "utf-8-escaped": lambda value: value.decode("utf-8", "surrogateescape").translate(
        {byte: f"%{byte - 0xDC00:02X}" for byte in range(0xDC80, 0xDD00)}
    ),
}


@pytest.mark.parametrize("decoding", list(DECODED))
@pytest.mark.parametrize(("prefix", "below", "raw", "expected"), CASES, ids=IDS)
def test_core_function(prefix: bytes, below: bytes, raw: str | None, expected: str, decoding: Decoding) -> None:
    decode = DECODED[decoding]
    root_path, path = client_paths(decode(prefix), decode(below), raw, decoding)
    assert root_path + path == expected


def wsgi_url(prefix: bytes, below: bytes, raw: str | None) -> str:
    environ = {
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "api.test",
        "SCRIPT_NAME": prefix.decode("latin-1"),
        "PATH_INFO": below.decode("latin-1"),
        "QUERY_STRING": "",
    }
    if raw is not None:
        environ["RAW_URI"] = raw + "?q=1"
    return request_info_from_environ(environ, NO_PROXIES).url


def asgi_scope(prefix: bytes, below: bytes, raw: str | None) -> dict[str, Any]:
    root = prefix.decode("utf-8", "replace")
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "root_path": root,
        "path": root + below.decode("utf-8", "replace"),  # the ASGI spec: path includes root_path
        "query_string": b"",
        "headers": [(b"host", b"api.test")],
        "client": ("203.0.113.9", 5000),
        "server": ("10.0.0.1", 80),
    }
    if raw is not None:
        scope["raw_path"] = raw.encode("latin-1")
    return scope


def asgi_url(prefix: bytes, below: bytes, raw: str | None) -> str:
    return asgi.request_info(asgi_scope(prefix, below, raw), NO_PROXIES).url


def django_wsgi_url(prefix: bytes, below: bytes, raw: str | None) -> str:
    # PATH_INFO as a WSGI server sets it (latin-1; RequestFactory would make an empty one "/").
    extra = {"SCRIPT_NAME": prefix.decode("latin-1"), "PATH_INFO": below.decode("latin-1"), "HTTP_HOST": "api.test"}
    if raw is not None:
        extra["RAW_URI"] = raw
    request = RequestFactory().generic("GET", quote(below, safe="/"), **extra)
    with override_settings(**dict(BASE, ALLOWED_HOSTS=["api.test"])):
        return translate.request_info(request, NO_PROXIES).url


def django_asgi_url(prefix: bytes, below: bytes, raw: str | None) -> str:
    request = ASGIRequest(asgi_scope(prefix, below, raw), io.BytesIO())
    with override_settings(**dict(BASE, ALLOWED_HOSTS=["api.test"])):
        return translate.request_info(request, NO_PROXIES).url


ADAPTERS: dict[str, Callable[[bytes, bytes, str | None], str]] = {
    "wsgi": wsgi_url,
    "asgi": asgi_url,
    "django_wsgi": django_wsgi_url,
    "django_asgi": django_asgi_url,
}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
@pytest.mark.parametrize(("prefix", "below", "raw", "expected"), CASES, ids=IDS)
def test_every_adapter_rebuilds_the_same_url(prefix: bytes, below: bytes, raw: str | None, expected: str, adapter: str) -> None:
    assert ADAPTERS[adapter](prefix, below, raw) == ORIGIN + expected


def test_encoded_slash_proof_matches_only_its_own_spelling_everywhere() -> None:
    for url in (driver(b"/api", b"/files/a/b", "/api/files/a%2Fb") for driver in ADAPTERS.values()):
        assert normalize_htu(url) == normalize_htu(ORIGIN + "/api/files/a%2Fb")
        assert normalize_htu(url) != normalize_htu(ORIGIN + "/api/files/a/b")


def test_an_unencodable_path_raises_for_the_adapter_to_refuse() -> None:
    with pytest.raises(UnicodeEncodeError):
        client_paths("", "/\ud800", None, "utf-8")


# -- one path-safe table ---------------------------------------------------------------------------

SUB_DELIMS = "!$&'()*+,;="  # RFC 3986 §2.2
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


def test_path_safe_is_rfc3986_pchar_without_percent_plus_slash() -> None:
    assert set(PATH_SAFE) == set(SUB_DELIMS + ":@/")


def test_every_rebuilt_path_escapes_the_same_characters() -> None:
    """Without a raw target each adapter re-encodes the decoded path with the one table."""
    below = "/" + PRINTABLE.replace("/", "")
    expected = quote(below, safe=PATH_SAFE)
    assert set(expected) - set(string.ascii_letters + string.digits + "-._~%" + PATH_SAFE) == set()
    for driver in ADAPTERS.values():
        assert driver(b"", below.encode(), None) == ORIGIN + expected
    # ... and htu normalization keeps exactly those characters as they are.
    assert normalize_htu(ORIGIN + expected) == ORIGIN + expected.replace("%7E", "~")


def test_forwarded_prefix_accepts_the_path_safe_characters_only() -> None:
    trusted = ProxySettings.create(["10.0.0.0/8"], trusted_headers="x-forwarded-prefix")

    def url(prefix: str) -> str:
        headers = {"x-forwarded-prefix": [prefix]}
        return rebuild_url(scheme="http", host="api.test", root_path="", path="/x", peer="10.0.0.1", headers=headers,
                           settings=trusted)  # fmt: skip

    prefix = "/edge" + PATH_SAFE.replace(",", "") + "%20"  # a comma would separate two hops
    assert url(prefix) == ORIGIN + prefix + "/x"
    for char in '"<>[]\\^`{|}?#':
        assert url("/edge" + char) == ORIGIN + "/x", char


# -- one header-folding helper ----------------------------------------------------------------------


def test_fold_fields_joins_repeated_fields_in_order() -> None:
    fields = [("WWW-Authenticate", 'DPoP error="x"'), ("Cache-Control", "no-store"), ("WWW-Authenticate", "Bearer")]
    assert fold_fields(fields) == {"WWW-Authenticate": 'DPoP error="x", Bearer', "Cache-Control": "no-store"}
    assert fold_fields([]) == {}


def test_adapters_fold_with_the_core_helper() -> None:
    assert translate.joined_headers is fold_fields
    assert starlette._folded is fold_fields


def test_list_elements_read_repeated_lines_and_comma_joined_values_alike() -> None:
    assert list_elements([" a, b", "", "c ,,d "]) == ["a", "b", "c", "d"]
    assert list_elements(["a", "b"]) == list_elements(["a,b"]) == ["a", "b"]
    assert list_elements([]) == []


def test_repeated_forwarding_lines_count_as_one_comma_joined_line() -> None:
    trusted = ProxySettings.create(["10.0.0.0/8"], trusted_headers="x-forwarded-for, x-forwarded-host")

    def url(headers: dict[str, list[str]]) -> str:
        return rebuild_url(scheme="http", host="api.test", root_path="", path="/x", peer="10.0.0.1", headers=headers,
                           settings=trusted)  # fmt: skip

    # client (spoofs a host) -> edge 10.0.0.5 (adds public.test) -> inner 10.0.0.1 (adds internal.test)
    hosts = ["spoofed.test", "public.test", "internal.test"]
    split = {"x-forwarded-for": ["198.51.100.1", "10.0.0.5"], "x-forwarded-host": hosts}
    joined = {"x-forwarded-for": ["198.51.100.1, 10.0.0.5"], "x-forwarded-host": [" , ".join(hosts)]}
    assert url(split) == url(joined) == "http://public.test/x"
