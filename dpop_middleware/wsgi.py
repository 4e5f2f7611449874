"""DPoP for any WSGI application: :class:`DPoPWSGIMiddleware`, and the WSGI request translation
(:func:`request_info_from_environ`, :func:`authenticate_environ`) that the Flask adapter reuses.

Guide (options, how the URL is rebuilt, proxies): the "Plain WSGI" section of docs/flask.md.
"""

from __future__ import annotations

import dataclasses
import http
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .adapter_options import build_options
from .core.binding import DPoPPrincipal
from .core.challenge import ErrorResponse
from .core.client_cert import client_cert_settings_problem
from .core.errors import InvalidRequestError
from .core.origin import ProxySettings
from .core.request import RequestInfo, is_cors_answer
from .core.resource_metadata import PublishedMetadata
from .core.step_up import StepUp
from .core.target import client_paths
from .verifier import AuthResult, DPoPVerifier
from .wsgi_environ import environ_request, is_cors_preflight_environ, raw_target_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

    from .adapter_options import AdapterOptions

__all__ = [
    "DPoPWSGIMiddleware",
    "authenticate_environ",
    "error_status_line",
    "principal_from_environ",
    "request_info_from_environ",
    "serve_metadata_environ",
    "wsgi_rejection",
]

logger = logging.getLogger("dpop_middleware")

ENVIRON_KEY = "dpop"

_PROXY_FIX_KEY = "werkzeug.proxy_fix.orig"
_warned_proxy_fix = False


def _paths(environ: Mapping[str, Any]) -> tuple[str, str]:
    """``(root_path, path)`` for :func:`rebuild_url`, percent-encoded as the client sent them."""
    # PEP 3333: SCRIPT_NAME and PATH_INFO carry the path's bytes as latin-1 characters.
    script_name, path_info = str(environ.get("SCRIPT_NAME", "")), str(environ.get("PATH_INFO", ""))
    return client_paths(script_name, path_info, raw_target_path(environ), "latin-1")


def _host(environ: Mapping[str, Any]) -> str:
    host = environ.get("HTTP_HOST")
    if not host:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}".rstrip(":")
    # An invalid Host is refused by the core (rebuild_url empties it, the verifier answers 400).
    return str(host)


def _effective_settings(environ: Mapping[str, Any], settings: ProxySettings) -> ProxySettings:
    if _PROXY_FIX_KEY not in environ or not settings.trusted_proxies:
        return settings
    global _warned_proxy_fix  # noqa: PLW0603 - a once-per-process warning flag
    if not _warned_proxy_fix:
        _warned_proxy_fix = True
        logger.warning(
            "dpop: werkzeug ProxyFix already applied forwarded headers; trusted_proxies is ignored. "
            "Configure proxies in one place only."
        )
    return dataclasses.replace(settings, trusted_proxies=())


def request_info_from_environ(environ: Mapping[str, Any], proxy_settings: ProxySettings) -> RequestInfo:
    """Translate a WSGI environ into a :class:`RequestInfo` whose URL is the one the client used.

    The URL keeps the query string (the core refuses tokens sent there). Headers: the two the core
    reads, ``Authorization`` and ``DPoP``. A WSGI server has already joined repeated header fields
    with commas, which the core counts as several values (a comma never occurs in a proof).
    """
    root_path, path = _paths(environ)
    return environ_request(
        environ,
        _effective_settings(environ, proxy_settings),
        method=str(environ.get("REQUEST_METHOD", "GET")),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        host=_host(environ),
        root_path=root_path,
        path=path,
    )


def authenticate_environ(
    verifier: DPoPVerifier,
    environ: Mapping[str, Any],
    proxy_settings: ProxySettings,
    *,
    required: bool = True,
    scopes: tuple[str, ...] = (),
    step_up: StepUp | None = None,
) -> AuthResult:
    """Translate ``environ`` and run :meth:`DPoPVerifier.authenticate` with the route's policy.

    An environ that cannot be translated (undecodable path, for instance) is the client's doing:
    it gets the core's ``400 invalid_request`` rather than a 500.
    """
    try:
        request = request_info_from_environ(environ, proxy_settings)
    except (ValueError, UnicodeError):
        bad = InvalidRequestError("bad_request_url", "Request URL cannot be determined")
        return verifier.reject(bad, None)
    return verifier.authenticate(request, required=required, scopes=scopes, step_up=step_up)


def error_status_line(status: int) -> str:
    """``"401 Unauthorized"``: the WSGI status line for ``status``."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def wsgi_rejection(rejection: ErrorResponse, start_response: StartResponse) -> list[bytes]:
    """Send the core's rejection verbatim: status, challenge headers, JSON body."""
    headers = [
        *rejection.headers,
        ("Content-Type", rejection.content_type),
        ("Content-Length", str(len(rejection.body))),
    ]
    start_response(error_status_line(rejection.status), headers)
    return [rejection.body]


def serve_metadata_environ(
    published: PublishedMetadata | None, environ: Mapping[str, Any], start_response: StartResponse
) -> list[bytes] | None:
    """The answer to a request for the RFC 9728 document (matched on ``SCRIPT_NAME + PATH_INFO``,
    the path from the host on); ``None`` (nothing started) for any other request."""
    if published is None:
        return None
    if not published.serves(str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))):
        return None
    answer = published.answer(str(environ.get("REQUEST_METHOD", "GET")))
    start_response(error_status_line(answer.status), list(answer.headers))
    return [answer.body]


class DPoPWSGIMiddleware:
    """WSGI middleware that admits only requests the :class:`DPoPVerifier` accepts.

    Route policy (docs/routes.md, :class:`~dpop_middleware.core.routes.RoutePolicy`): ``default``
    (``"required"``, ``"optional"``: anonymous requests pass with ``environ["dpop"] = None``, or
    ``"exempt"``) for paths no rule names; ``required_paths``, ``optional_paths``, ``exempt_paths``
    (prefixes by whole segments) and their ``*_path_patterns`` (regexes, whole path); ``path_scopes``
    maps a path to the scopes it needs (a space-separated string or a list). Paths are matched
    against ``PATH_INFO`` as the app routes it (a path with dot segments must satisfy a relaxing
    rule read literally and normalized). ``required=True/False`` is the deprecated spelling of
    ``default``.
    ``trusted_proxies`` (addresses or CIDR blocks), ``trusted_headers`` (which forwarding headers
    to believe from them) and ``public_url`` say how to rebuild the public URL behind proxies (see
    docs/flask.md, "Plain WSGI"). ``allowed_hosts`` (Django's ``ALLOWED_HOSTS`` syntax: ``"api.example.com"``,
    ``".example.com"``, ``"*"``) pins the host of that URL: another is answered ``400
    invalid_request``. Without it or ``public_url`` the Host header decides, and construction logs
    one WARNING (unless the verifier is in debug mode). A CORS preflight passes to the app untouched.

    On success ``environ["dpop"]`` holds the :class:`~dpop_middleware.DPoPPrincipal` (``None`` for
    an anonymous request on an optional path, and in ``report_only`` mode for a request that would
    have been refused) and any fresh ``DPoP-Nonce`` is added to the app's response headers.
    """

    def __init__(self, app: WSGIApplication, verifier: DPoPVerifier, **options: Unpack[AdapterOptions]) -> None:
        self.app = app
        self.verifier = verifier
        self.proxy_settings, self.rules = build_options("DPoPWSGIMiddleware", options)
        self.proxy_settings.warn_if_host_unchecked(debug=verifier.config.debug, names="public_url= or allowed_hosts=")
        problem = client_cert_settings_problem(
            verifier.config.certificate_bound_tokens, self.proxy_settings.client_cert_header
        )
        if problem is not None:
            raise ValueError(f"DPoPWSGIMiddleware: {problem} (DPoPVerifier(certificate_bound_tokens=True))")
        # RFC 9728: served here, before any DPoP check, when the verifier has resource_metadata.
        self.metadata = verifier.published_metadata(self.rules.path_scopes)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.metadata is not None:
            served = serve_metadata_environ(self.metadata, environ, start_response)
            if served is not None:
                return served
        # The literal decoded path, as the app routes it: the policy also weighs its normalized form.
        route = self.rules.decide(str(environ.get("PATH_INFO", "")) or "/")
        if route.exempt:
            environ[ENVIRON_KEY] = None
            return self.app(environ, start_response)
        if is_cors_preflight_environ(environ):
            environ[ENVIRON_KEY] = None
            return _cors_answer_only(self.app, environ, start_response)
        result = authenticate_environ(
            self.verifier,
            environ,
            self.proxy_settings,
            required=route.required,
            scopes=route.scopes,
            step_up=route.step_up,
        )
        if result.rejection is not None:
            return wsgi_rejection(result.rejection, start_response)
        environ[ENVIRON_KEY] = result.principal
        if not result.response_headers:
            return self.app(environ, start_response)
        return self.app(environ, _adding_headers(start_response, result.response_headers))


def _cors_answer_only(app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Run a preflight through the app; only a CORS layer's answer goes out (``core.request.is_cors_answer``).

    Any other response is replaced by an empty 200 and its body dropped, so a route that ignores the
    method leaks nothing to a request without credentials.
    """
    answered: dict[str, bool] = {}

    def checked(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answered["cors"] = is_cors_answer(headers)
        if answered["cors"]:
            return start_response(status, headers, exc_info)
        return start_response("200 OK", [("Content-Length", "0")], exc_info)

    body = app(environ, checked)
    try:
        # Collected first (a preflight's answer is tiny): an app may call start_response lazily.
        chunks = list(body)
    finally:
        close = getattr(body, "close", None)
        if callable(close):
            close()
    if "cors" not in answered:  # pragma: no cover - an app that never started a response
        start_response("200 OK", [("Content-Length", "0")])
    return chunks if answered.get("cors") else []


def _adding_headers(start_response: StartResponse, extra: Sequence[tuple[str, str]]) -> StartResponse:
    """A ``start_response`` that appends ``extra`` (the fresh ``DPoP-Nonce``) to the app's headers."""

    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, *extra], exc_info)

    return wrapped


def principal_from_environ(environ: Mapping[str, Any]) -> DPoPPrincipal | None:
    """The principal :class:`DPoPWSGIMiddleware` attached, or ``None``."""
    value = environ.get(ENVIRON_KEY)
    return value if isinstance(value, DPoPPrincipal) else None
