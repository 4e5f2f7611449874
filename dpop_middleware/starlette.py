"""Starlette and any ASGI 3 app: :class:`DPoPMiddleware`, the :class:`DPoPAuthBackend` for Starlette's
``AuthenticationMiddleware`` (with :class:`DPoPAuthenticationMiddleware`), and the endpoint helpers
:func:`get_principal`, :func:`require_principal` and :func:`requires_scopes`.

Guide (options, proxies, CORS, WebSockets, debug): docs/starlette-fastapi.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
    from starlette.exceptions import HTTPException
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from starlette.websockets import WebSocket
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "starlette", "the Starlette adapter needs Starlette", "starlette")

from .adapter_options import build_options
from .asgi import (
    OUTCOME_KEY,
    PRINCIPAL_KEY,
    REQUEST_INFO_KEY,
    RESPONSE_HEADERS_KEY,
    VERIFIER_KEY,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    authenticate_scope,
    checked_verifier,
    is_preflight,
    preflight_send,
    route_path,
    send_metadata,
    send_rejection,
    serve_metadata,
    with_response_headers,
)
from .core.binding import DPoPPrincipal
from .core.challenge import ErrorResponse
from .core.client_cert import client_cert_settings_problem
from .core.config import Mode
from .core.errors import AuthenticationRequired
from .core.fields import fold_fields
from .core.origin import ProxySettings
from .core.request import RequestInfo
from .core.resource_metadata import PublishedMetadata
from .core.routes import RoutePolicy, required_route
from .core.step_up import StepUp
from .verifier import AuthResult, DPoPVerifier

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .adapter_options import AdapterOptions

__all__ = [
    "DPoPAuthBackend",
    "DPoPAuthenticationError",
    "DPoPAuthenticationMiddleware",
    "DPoPHTTPError",
    "DPoPMiddleware",
    "DPoPUser",
    "dpop_error_handler",
    "error_response",
    "get_principal",
    "metadata_route",
    "require_principal",
    "requires_scopes",
    "requires_step_up",
]

logger = logging.getLogger("dpop_middleware")

F = TypeVar("F", bound=Callable[..., Any])

_REJECTION_KEY = "dpop.rejection"  # the backend's rejection, for a WebSocket (see DPoPAuthenticationMiddleware)
_EXEMPT_KEY = "dpop.exempt"  # set on an exempt path: no DPoP layer checked it (see require_principal)


def app_debug(scope: Scope, debug: bool | None) -> bool | None:
    """The ``debug`` an adapter renders rejections with: its own option when given, else ``True``
    when the Starlette/FastAPI app serving the request runs with ``debug=True``, else ``None`` (the
    verifier's own ``debug`` decides)."""
    if debug is not None:
        return debug
    app = scope.get("app")  # set by Starlette (and FastAPI) for every request, before any middleware
    return True if isinstance(app, Starlette) and app.debug is True else None


def configured(verifier: object, owner: str, proxies: ProxySettings, debug: bool | None) -> DPoPVerifier:
    """Start-up checks shared by every ASGI layer: a real verifier, and a Host that something pins.

    ``debug`` (the layer's option; ``None``: the verifier's) silences the unpinned-Host warning, as
    Django's ``DEBUG`` does. Starlette's own ``app.debug`` is not known yet at construction.
    """
    checked = checked_verifier(verifier, owner)
    name = owner.partition("(")[0]
    problem = client_cert_settings_problem(checked.config.certificate_bound_tokens, proxies.client_cert_header)
    if problem is not None:
        raise ValueError(f"{name}: {problem} (DPoPVerifier(certificate_bound_tokens=True))")
    proxies.warn_if_host_unchecked(
        debug=checked.config.debug if debug is None else debug,
        names=f"{name}(public_url=...) or {name}(allowed_hosts=[...]) (or Starlette's TrustedHostMiddleware in front)",
    )
    return checked


@dataclass(frozen=True)
class _Policy:
    """Everything an ASGI adapter precomputes: route policy, proxy settings, and ``debug``."""

    rules: RoutePolicy
    proxies: ProxySettings
    debug: bool | None = None

    @classmethod
    def create(cls, owner: str, debug: bool | None, options: AdapterOptions) -> _Policy:
        proxies, rules = build_options(owner, options)
        return cls(rules, proxies, debug)


async def _authenticate(verifier: DPoPVerifier, policy: _Policy, scope: Scope) -> AuthResult | None:
    """Run the verifier (and path scopes) for an http/websocket scope; ``None`` for an exempt path or
    a CORS preflight (both go on anonymous: ``scope["dpop"]`` is ``None``)."""
    scope[VERIFIER_KEY] = verifier
    if is_preflight(scope):
        # Never challenged (browsers send no credentials with it), so that a CORS layer inside ours
        # can answer it; it carries no principal, so an endpoint taking OPTIONS gains nothing.
        scope[PRINCIPAL_KEY] = None
        return None
    # The literal path, as the router sees it: the route policy weighs both readings.
    route = policy.rules.decide(route_path(scope))
    if route.exempt:
        scope[PRINCIPAL_KEY] = None
        scope[_EXEMPT_KEY] = True
        return None
    return await authenticate_scope(
        verifier, scope, policy.proxies, required=route.required, scopes=route.scopes, step_up=route.step_up,
        debug=app_debug(scope, policy.debug),
    )  # fmt: skip


class DPoPMiddleware:
    """Pure ASGI middleware: verify every HTTP request and WebSocket upgrade, or answer the challenge.

    Route policy as in every adapter (docs/routes.md): ``default`` (``"required"``) for paths no rule
    names; ``exempt_paths`` are never checked (health checks); ``optional_paths`` admit anonymous
    requests but still reject bad credentials; ``required_paths`` need credentials whatever the
    default; ``path_scopes`` maps a path to the scopes it needs. A rule covers its path and everything
    below it, by whole segments (the ``*_path_patterns`` variants take regexes matching the whole
    path), matched against the decoded path below the mount point; the strictest rule wins.
    ``required=True/False`` is the deprecated spelling of ``default``. ``trusted_proxies``,
    ``trusted_headers``, ``public_url``, ``allowed_hosts`` and ``debug``: see docs/starlette-fastapi.md.
    CORS preflights go on anonymous; lifespan and any other non-HTTP scope pass through untouched.
    ``verifier`` must be a :class:`~dpop_middleware.verifier.DPoPVerifier` (``TypeError`` otherwise).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: DPoPVerifier,
        debug: bool | None = None,
        **options: Unpack[AdapterOptions],
    ) -> None:
        self.app = app
        self._policy = _Policy.create("DPoPMiddleware", debug, options)
        self.verifier = configured(verifier, "DPoPMiddleware(verifier=...)", self._policy.proxies, debug)
        # RFC 9728: served here, before any DPoP check, when the verifier has resource_metadata.
        self._metadata = self.verifier.published_metadata(self._policy.rules.path_scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._metadata is not None and await serve_metadata(self._metadata, scope, send):
            return
        result = await _authenticate(self.verifier, self._policy, scope)
        if result is None:
            exempt = scope.get(_EXEMPT_KEY, False)
            await self.app(scope, receive, send if exempt or not is_preflight(scope) else preflight_send(send))
        elif result.rejection is not None:
            await send_rejection(scope, receive, send, result.rejection)
        else:
            await self.app(scope, receive, with_response_headers(send, result.response_headers))


def metadata_route(verifier: DPoPVerifier, *, path_scopes: Any = ()) -> Route:
    """A route serving the verifier's RFC 9728 document, for apps that protect routes with
    :class:`~dpop_middleware.fastapi.DPoPBearer` or the auth backend rather than :class:`DPoPMiddleware`
    (which serves it itself): ``app.router.routes.append(metadata_route(verifier))``.

    ``path_scopes``: ``{path: scopes}`` whose scopes make ``scopes_supported`` (when the metadata
    names none). ``ValueError`` when the verifier has no ``resource_metadata``.
    """
    checked = checked_verifier(verifier, "metadata_route(verifier)")
    rules = RoutePolicy.create(path_scopes=path_scopes or None)
    published = checked.published_metadata(rules.path_scopes)
    if published is None:
        raise ValueError("metadata_route: the verifier has no resource_metadata=ResourceMetadata(...)")

    return Route(published.path, _MetadataApp(published), include_in_schema=False)


class _MetadataApp:
    """The ASGI app of :func:`metadata_route` (a class: Starlette treats a plain function as a request
    handler, an object as an ASGI app that sees every method, so 405 stays the core's answer)."""

    def __init__(self, published: PublishedMetadata) -> None:
        self.published = published

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_metadata(send, self.published.answer(str(scope.get("method") or "GET")))


def get_principal(conn: HTTPConnection) -> DPoPPrincipal | None:
    """The principal of this request (``None``: anonymous, exempt, a preflight, a ``report_only``
    failure, or no DPoP layer ran: :func:`require_principal` tells these apart)."""
    return cast("DPoPPrincipal | None", conn.scope.get(PRINCIPAL_KEY))


_folded = fold_fields  # headers as a mapping (Starlette's HTTPException): repeated fields folded


class DPoPHTTPError(HTTPException):
    """A DPoP rejection raised from an endpoint (:func:`require_principal`); ``rejection`` is exact.

    Starlette's default handler sends its status and headers (the challenge, ``Cache-Control``) with
    a plain-text ``error_description``; register :func:`dpop_error_handler` for the core's JSON body
    and each ``WWW-Authenticate`` field apart.
    """

    def __init__(self, rejection: ErrorResponse) -> None:
        super().__init__(rejection.status, detail=rejection.error.description, headers=_folded(rejection.headers))
        self.rejection = rejection


async def dpop_error_handler(request: Request, exc: Exception) -> Response:
    """``app.add_exception_handler(DPoPHTTPError, dpop_error_handler)``: the rejection verbatim."""
    if not isinstance(exc, DPoPHTTPError):
        raise exc
    return error_response(exc.rejection)


def require_principal(conn: HTTPConnection) -> DPoPPrincipal:
    """The request's principal, or an exception that refuses the request; never ``None``.

    For endpoints that cannot run without a DPoP principal. Raises :class:`DPoPHTTPError` (401 with
    the verifier's challenge) when a DPoP layer ran and the request is anonymous: an optional path
    without credentials, a CORS preflight, a failure only reported in ``report_only`` (an endpoint
    that needs a principal must not run then either). Raises ``HTTPException(503)`` and logs an
    ERROR naming the fix when no DPoP layer ran (no :class:`DPoPMiddleware` /
    :class:`DPoPAuthBackend` in front, or something removed ``scope["dpop"]``) or the path is in
    ``exempt_paths``: a deployment mistake, which ``scope["dpop"] is None`` alone would hide.
    """
    scope = conn.scope
    principal = scope.get(PRINCIPAL_KEY)
    if isinstance(principal, DPoPPrincipal):
        return principal
    verifier = scope.get(VERIFIER_KEY)
    if not isinstance(verifier, DPoPVerifier) or PRINCIPAL_KEY not in scope:
        logger.error(
            "dpop require_principal: no DPoP layer authenticated %s %r: put DPoPMiddleware (or "
            "DPoPAuthenticationMiddleware with DPoPAuthBackend) in front of this endpoint, and keep "
            "middleware between them from dropping scope['dpop']",
            scope.get("method", "GET"),
            scope.get("path"),
        )
        raise HTTPException(503, "DPoP authentication is not configured for this endpoint")
    if scope.get(_EXEMPT_KEY):
        logger.error(
            "dpop require_principal: %r is in exempt_paths, so no DPoP layer checks it: remove it from "
            "exempt_paths (or list it in optional_paths) to have the principal here",
            scope.get("path"),
        )
        raise HTTPException(503, "DPoP authentication is not configured for this endpoint")
    missing = AuthenticationRequired()
    if scope.get(OUTCOME_KEY) == "reported":
        # report_only already logged and counted this request's failure: refuse it without a second
        # report, which would inflate the figures a rollout is judged by.
        raise DPoPHTTPError(verifier.render(missing))
    info = scope.get(REQUEST_INFO_KEY)
    # Even in report_only: there is still no principal.
    raise DPoPHTTPError(verifier.refuse(missing, info if isinstance(info, RequestInfo) else None))


def error_response(rejection: ErrorResponse) -> Response:
    """The core's rejection as a Starlette response, every header kept (two challenges stay two)."""
    response = Response(rejection.body, status_code=rejection.status, media_type=rejection.content_type)
    for name, value in rejection.headers:
        response.headers.append(name, value)
    return response


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> HTTPConnection:
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise TypeError(f"{what}: the endpoint receives no Request")


def _route_rejection(
    conn: HTTPConnection, scopes: tuple[str, ...], step_up: StepUp | None, what: str
) -> ErrorResponse | None:
    verifier = conn.scope.get(VERIFIER_KEY)
    if not isinstance(verifier, DPoPVerifier):
        # A deployment error, not a request error: refuse loudly rather than skip the check.
        raise RuntimeError(f"{what} needs DPoPMiddleware or DPoPAuthBackend in front of the endpoint")
    principal = get_principal(conn)
    reported = verifier.config.mode is Mode.REPORT_ONLY and conn.scope.get(OUTCOME_KEY) == "reported"
    if reported and principal is None:
        return None  # its failure was logged and counted once, and report_only lets it go on
    found = conn.scope.get(REQUEST_INFO_KEY)
    info = found if isinstance(found, RequestInfo) else None
    return verifier.authorize(principal, scopes, info, step_up=step_up).rejection


def requires_scopes(
    *scopes: str, acr_values: Iterable[str] | str | None = None, max_age: int | None = None
) -> Callable[[F], F]:
    """Endpoint decorator: answer 403 ``insufficient_scope`` (with its challenge) unless granted.

    ``acr_values`` (any one of them) and ``max_age`` (seconds since the user authenticated) add a
    step-up demand (RFC 9470): a token that falls short gets 401 ``insufficient_user_authentication``.
    Works on sync and async Starlette endpoints, ``HTTPEndpoint`` methods and WebSocket endpoints
    (denied as :class:`DPoPMiddleware` denies an upgrade) behind :class:`DPoPMiddleware` or
    :class:`DPoPAuthBackend`. An anonymous request on an optional path
    gets the same 403: it holds no scope.
    """
    route = required_route("requires_scopes", {"scopes": scopes or None, "acr_values": acr_values, "max_age": max_age})
    return _route_guard(route.scopes, route.step_up, "requires_scopes")


def requires_step_up(acr_values: Iterable[str] | str | None = None, max_age: int | None = None) -> Callable[[F], F]:
    """Endpoint decorator: the user must have authenticated with one of ``acr_values``, at most
    ``max_age`` seconds ago (RFC 9470), else 401 ``insufficient_user_authentication`` whose challenge
    repeats the demand. As :func:`requires_scopes` otherwise."""
    step_up = required_route("requires_step_up", {"acr_values": acr_values, "max_age": max_age}).step_up
    if step_up is None:
        raise TypeError("requires_step_up: give acr_values, max_age or both")
    return _route_guard((), step_up, "requires_step_up")


def _route_guard(needed: tuple[str, ...], step_up: StepUp | None, what: str) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                conn = _connection(args, kwargs, what)
                rejection = _route_rejection(conn, needed, step_up, what)
                if rejection is None:
                    return await func(*args, **kwargs)
                if isinstance(conn, WebSocket):
                    await send_rejection(conn.scope, conn.receive, conn.send, rejection)
                    return None
                return error_response(rejection)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            rejection = _route_rejection(_connection(args, kwargs, what), needed, step_up, what)
            if rejection is not None:
                return error_response(rejection)
            return func(*args, **kwargs)

        return cast(F, sync_wrapper)

    return decorator


class DPoPUser(BaseUser):
    """``request.user`` for a DPoP-authenticated request; ``principal`` holds everything."""

    def __init__(self, principal: DPoPPrincipal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.subject or self.principal.client_id or self.principal.jkt or ""

    @property
    def identity(self) -> str:
        return self.principal.subject or ""


class DPoPAuthenticationError(AuthenticationError):
    """Raised by :class:`DPoPAuthBackend`; ``rejection`` is the exact response to send."""

    def __init__(self, rejection: ErrorResponse) -> None:
        super().__init__(rejection.error.reason)
        self.rejection = rejection


class DPoPAuthBackend(AuthenticationBackend):
    """``AuthenticationBackend`` for Starlette's ``AuthenticationMiddleware``.

    Returns ``(AuthCredentials(token scopes), DPoPUser)`` for an authenticated request, ``None``
    (Starlette's anonymous user) on an exempt path or an optional one without credentials, and raises
    :class:`DPoPAuthenticationError` otherwise: pass ``on_error=DPoPAuthBackend.on_error`` (or use
    :class:`DPoPAuthenticationMiddleware`) so that it is sent as the exact challenge. Path options as
    in :class:`DPoPMiddleware`; the principal is also put in ``scope["dpop"]``.
    """

    def __init__(
        self,
        verifier: DPoPVerifier,
        *,
        debug: bool | None = None,
        **options: Unpack[AdapterOptions],
    ) -> None:
        self._policy = _Policy.create("DPoPAuthBackend", debug, options)
        self.verifier = configured(verifier, "DPoPAuthBackend", self._policy.proxies, debug)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        result = await _authenticate(self.verifier, self._policy, conn.scope)
        if result is None:
            return None
        if result.rejection is not None:
            conn.scope[_REJECTION_KEY] = result.rejection
            raise DPoPAuthenticationError(result.rejection)
        if result.response_headers:
            conn.scope[RESPONSE_HEADERS_KEY] = result.response_headers
        if result.principal is None:
            return None
        return AuthCredentials(sorted(result.principal.scopes)), DPoPUser(result.principal)

    @staticmethod
    def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """``on_error`` for ``AuthenticationMiddleware``: the exact rejection for our errors."""
        if isinstance(exc, DPoPAuthenticationError):
            return error_response(exc.rejection)
        return PlainTextResponse(str(exc), status_code=400)  # another backend's error: Starlette's default


class DPoPAuthenticationMiddleware(AuthenticationMiddleware):
    """Starlette's ``AuthenticationMiddleware`` with our ``on_error`` and ``DPoP-Nonce`` on success.

    The stock middleware gives a backend no way to add response headers; this one adds those that
    :class:`DPoPAuthBackend` left in ``scope["dpop.response_headers"]``. It also denies a rejected
    WebSocket upgrade exactly as :class:`DPoPMiddleware` does, where the stock one closes with 1000.
    """

    def __init__(
        self,
        app: ASGIApp,
        backend: AuthenticationBackend,
        on_error: Callable[[HTTPConnection, AuthenticationError], Response] | None = None,
    ) -> None:
        super().__init__(app, backend, on_error if on_error is not None else DPoPAuthBackend.on_error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def sender(message: Message) -> None:
            rejection = scope.get(_REJECTION_KEY)
            if message.get("type") == "websocket.close" and isinstance(rejection, ErrorResponse):
                # Starlette closes a rejected WebSocket with code 1000 whatever on_error says:
                # send the same rejection DPoPMiddleware would instead.
                await send_rejection(scope, receive, send, rejection)
                return
            # Read at response time: the backend runs after this wrapper is made.
            await with_response_headers(send, scope.get(RESPONSE_HEADERS_KEY) or ())(message)

        await super().__call__(scope, receive, sender)
