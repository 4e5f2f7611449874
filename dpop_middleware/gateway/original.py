"""The original request of a forward-auth subrequest: which headers a gateway sends, and what they say.

A gateway (nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``forwardAuth``, Envoy
``ext_authz``) asks us about a request it holds; the proof signs *that* request's method and URL,
so they must be read from where the gateway put them, and from nowhere else:

* ``nginx``: ``X-Original-Method`` and ``X-Original-URI`` (``$request_uri``, set by the shipped
  ``nginx.conf``), ``X-Forwarded-Host`` and ``X-Forwarded-Proto``;
* ``forwarded`` (Caddy, Traefik): ``X-Forwarded-Method``, ``X-Forwarded-Uri``, ``X-Forwarded-Host``,
  ``X-Forwarded-Proto``;
* ``envoy`` (``ext_authz`` over HTTP): the check request *is* the original one (method, path and
  query, ``Host``), plus ``X-Forwarded-Proto``.

Only the headers of the configured style are read: a gateway passes the client's own headers on to
us, so a client behind Caddy could otherwise send ``X-Original-URI`` and pick the URL (and the route
policy) its proof is checked against. Each must appear once; anything else is refused (400).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..core.fields import list_elements

__all__ = ["MAX_TARGET_LENGTH", "STYLES", "GatewayStyle", "Original", "OriginalRequestError", "read_original"]

GatewayStyle = Literal["nginx", "forwarded", "envoy"]
#: The gateway header conventions, as the ``gateway`` setting names them.
STYLES: tuple[GatewayStyle, ...] = ("nginx", "forwarded", "envoy")
#: The longest original request target accepted (nginx's default large header buffer is 8 KiB).
MAX_TARGET_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class _Names:
    method: str | None  # None: the check request's own method (Envoy)
    uri: str | None  # None: the check request's own target (Envoy)
    host: str
    proto: str


_NAMES: dict[GatewayStyle, _Names] = {
    "nginx": _Names("x-original-method", "x-original-uri", "x-forwarded-host", "x-forwarded-proto"),
    "forwarded": _Names("x-forwarded-method", "x-forwarded-uri", "x-forwarded-host", "x-forwarded-proto"),
    "envoy": _Names(None, None, "host", "x-forwarded-proto"),
}
#: Every request header some style reads (lower-case): what the app collects from a request.
READ_HEADERS = frozenset(
    name for names in _NAMES.values() for name in (names.method, names.uri, names.host, names.proto) if name
)

# RFC 9110 method = token; a length cap keeps logs and the proof cache small.
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
# An origin-form target: "/" then visible ASCII or bytes beyond it (raw UTF-8, or not UTF-8 at all:
# the URL core percent-encodes them); no space, no control character, no fragment.
_TARGET = re.compile(r"/[\x21-\x22\x24-\x7e\x80-\xff]*")


class OriginalRequestError(ValueError):
    """The gateway's description of the original request is missing or unusable."""


@dataclass(frozen=True, slots=True)
class Original:
    """The original request: method, raw path and query as sent, and the gateway's view of scheme and host."""

    method: str
    raw_path: str
    query: str
    proto: str | None
    host: str | None


def _one(headers: dict[str, list[str]], name: str, *, required: bool) -> str | None:
    values = headers.get(name, [])
    if len(values) > 1:
        raise OriginalRequestError(f"{name} appears {len(values)} times")
    if not values:
        if required:
            raise OriginalRequestError(f"{name} is missing")
        return None
    return values[0].strip()


def _last(headers: dict[str, list[str]], name: str) -> str | None:
    """The value the nearest proxy set: the last element of a (possibly appended-to) list header."""
    elements = list_elements(headers.get(name, ()))
    return elements[-1] if elements else None


def read_original(
    style: GatewayStyle,
    headers: Iterable[tuple[str, str]],
    *,
    request_method: str,
    request_target: str,
) -> Original:
    """The original request, from ``headers`` (lower-case names, latin-1 values) of the check request.

    ``request_method`` and ``request_target`` (raw path and ``?query``) are the check request's own,
    which Envoy's style reads. Raises :class:`OriginalRequestError` for anything missing, repeated,
    too long or not an origin-form target (absolute-form, ``*``, a fragment, controls).
    """
    names = _NAMES[style]
    collected: dict[str, list[str]] = {}
    for name, value in headers:
        collected.setdefault(name, []).append(value)
    method = request_method if names.method is None else _one(collected, names.method, required=True)
    target = request_target if names.uri is None else _one(collected, names.uri, required=True)
    if method is None or _METHOD.fullmatch(method) is None:
        raise OriginalRequestError("the original method is not an HTTP method")
    if target is None or len(target) > MAX_TARGET_LENGTH:
        raise OriginalRequestError("the original URI is missing or too long")
    if _TARGET.fullmatch(target) is None:
        raise OriginalRequestError("the original URI is not a path (origin-form request target)")
    raw_path, _, query = target.partition("?")
    proto = _last(collected, names.proto)
    if proto is not None and proto.lower() not in ("http", "https"):
        raise OriginalRequestError("the original scheme is not http or https")
    host = _one(collected, names.host, required=False) if style == "envoy" else _last(collected, names.host)
    return Original(method, raw_path, query, proto.lower() if proto else None, host)
