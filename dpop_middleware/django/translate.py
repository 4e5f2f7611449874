"""Translation between Django requests/responses and the core's RequestInfo/ErrorResponse.

The URL the client used (``htu``) is rebuilt from Django's own notions, then handed to
:func:`dpop_middleware.core.origin.rebuild_url`, which alone decides about forwarding headers:

* scheme: ``request.scheme``, which honours ``SECURE_PROXY_SSL_HEADER``;
* host: ``request.get_host()``, which honours ``USE_X_FORWARDED_HOST``/``USE_X_FORWARDED_PORT`` and
  validates against ``ALLOWED_HOSTS`` (a ``DisallowedHost`` becomes a 400 challenge);
* mount prefix: Django's script name, i.e. ``SCRIPT_NAME`` from ``request.META`` (or
  ``FORCE_SCRIPT_NAME``), exactly what ``reverse()`` prepends;
* query: ``QUERY_STRING`` as sent (the core refuses ``access_token`` there);
* path: as sent on the wire when the server tells us (``RAW_URI``/``REQUEST_URI`` under WSGI,
  ``raw_path`` under ASGI), else ``request.path_info`` percent-encoded again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.http import HttpRequest, HttpResponse

from ..core.challenge import ErrorResponse
from ..core.origin import ProxySettings, forwarding_from_environ, rebuild_url
from ..core.request import RequestInfo, credential_headers_from_environ

__all__ = ["apply_headers", "challenge_header", "joined_headers", "request_info", "to_response"]

# RFC 3986 pchar minus the percent sign: what may appear unescaped in a path.
_PATH_SAFE = "/:@!$&'()*+,;=~-._"


def _script_name(request: HttpRequest) -> str:
    # Django builds ``request.path`` as script name + path_info, honouring FORCE_SCRIPT_NAME.
    path, info = request.path, request.path_info
    if info and path.endswith(info):
        return str(path[: len(path) - len(info)]).rstrip("/")
    return str(request.META.get("SCRIPT_NAME", "")).rstrip("/")


def _raw_target(request: HttpRequest) -> str | None:
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if not raw:
        scope = getattr(request, "scope", None)  # ASGIRequest keeps the ASGI scope
        raw_path = scope.get("raw_path") if isinstance(scope, dict) else None
        if isinstance(raw_path, bytes):
            raw = raw_path.decode("latin-1")
    if not isinstance(raw, str) or not raw:
        return None
    if not raw.startswith("/"):  # absolute-form request target ("http://host/path")
        raw = urlsplit(raw).path or "/"
    return raw.partition("?")[0].partition("#")[0]


def _requoted_path_info(request: HttpRequest) -> str:
    return quote(request.path_info, safe=_PATH_SAFE) or "/"


def _path_below_mount(request: HttpRequest, script_name: str) -> str:
    # Django's decoded path_info is quoted again only where the raw target cannot serve (quote()
    # is pure Python and the raw target is there on every request under gunicorn and uvicorn).
    raw = _raw_target(request)
    if raw is None:
        return _requoted_path_info(request)
    if not script_name:
        return raw
    if raw == script_name or raw.startswith(script_name + "/"):
        return raw[len(script_name) :]
    if unquote(raw).startswith(script_name + "/"):
        return _requoted_path_info(request)  # the prefix was sent percent-encoded: trust Django's decoding
    # The target lacks the prefix: a proxy stripped it before us; the path is below the mount point.
    return raw


def request_info(request: HttpRequest, proxy: ProxySettings) -> RequestInfo:
    """The core's view of ``request``. Raises ``DisallowedHost`` for a Host not in ALLOWED_HOSTS."""
    meta = request.META
    host = request.get_host()
    script_name = _script_name(request)
    url = rebuild_url(
        scheme=request.scheme or "http",
        host=host,
        root_path=script_name,
        path=_path_below_mount(request, script_name),
        peer=meta.get("REMOTE_ADDR"),
        headers=forwarding_from_environ(meta, proxy),
        settings=proxy,
    )
    query = meta.get("QUERY_STRING")
    if query:
        # Kept so that the core refuses an access token sent in the query string, as every adapter
        # does (htu comparison drops the query).
        url = f"{url}?{query}"
    # Repeated fields reach us comma-joined under WSGI and Django's ASGI handler alike.
    return RequestInfo(request.method or "GET", url, credential_headers_from_environ(meta))


def joined_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    # A Django response holds one value per header name; RFC 9110 §5.3 allows combining a list
    # field such as WWW-Authenticate (several challenges) into one comma-separated line.
    out: dict[str, str] = {}
    for name, value in headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def to_response(rejection: ErrorResponse) -> HttpResponse:
    """The core's rejection as a Django response, verbatim."""
    headers = joined_headers(rejection.headers)
    return HttpResponse(rejection.body, status=rejection.status, content_type=rejection.content_type, headers=headers)


def apply_headers(response: Any, headers: Iterable[tuple[str, str]]) -> None:
    """Add ``headers`` (e.g. ``DPoP-Nonce``) to a Django/DRF response unless already set."""
    for name, value in joined_headers(headers).items():
        if name not in response:
            response[name] = value


def challenge_header(rejection: ErrorResponse) -> str | None:
    """The (combined) ``WWW-Authenticate`` value of ``rejection``, if it has one."""
    return joined_headers(rejection.headers).get("WWW-Authenticate")
