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
  ``raw_path`` under ASGI) and it is the same path, else ``request.path_info`` percent-encoded again
  (the core's rule, :func:`dpop_middleware.core.target.client_paths`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..core.challenge import ErrorResponse
from ..core.fields import fold_fields
from ..core.origin import ProxySettings
from ..core.request import RequestInfo
from ..core.target import Decoding, client_paths
from ..wsgi_environ import environ_request, raw_target_path

__all__ = ["apply_headers", "challenge_header", "joined_headers", "request_info", "to_response"]


def _script_name(request: HttpRequest) -> str:
    # Django builds ``request.path`` as script name + path_info, honouring FORCE_SCRIPT_NAME.
    path, info = request.path, request.path_info
    if info and path.endswith(info):
        return str(path[: len(path) - len(info)]).rstrip("/")
    return str(request.META.get("SCRIPT_NAME", "")).rstrip("/")


def _paths(request: HttpRequest) -> tuple[str, str]:
    """``(root_path, path)`` for :func:`rebuild_url`, percent-encoded as the client sent them."""
    meta = request.META
    raw = raw_target_path(meta)
    scope = getattr(request, "scope", None)  # an ASGIRequest keeps the ASGI scope
    decoding: Decoding
    if isinstance(scope, dict):
        decoding = "utf-8"  # the ASGI server's decoding: U+FFFD for undecodable bytes
        raw_path = scope.get("raw_path")
        if raw is None and isinstance(raw_path, bytes):
            raw = raw_path.decode("latin-1").partition("?")[0]
    else:
        decoding = "utf-8-escaped"  # Django's WSGI handler escapes undecodable bytes again
    below = request.path_info
    if below == "/" and raw is not None and not raw.endswith("/"):
        below = ""  # Django reads an empty PATH_INFO (a request for the mount point itself) as "/"
    return client_paths(_script_name(request), below, raw, decoding)


def request_info(request: HttpRequest, proxy: ProxySettings) -> RequestInfo:
    """The core's view of ``request``. Raises ``DisallowedHost`` for a Host not in ALLOWED_HOSTS."""
    host = request.get_host()
    root_path, path = _paths(request)
    # Under Django's ASGI handler too, META holds the peer, the query string and the headers
    # (repeated fields comma-joined).
    return environ_request(
        request.META,
        proxy,
        method=request.method or "GET",
        scheme=request.scheme or "http",
        host=host,
        root_path=root_path,
        path=path,
    )


# A Django response holds one value per header name: repeated fields (two challenges) are folded.
joined_headers = fold_fields


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
