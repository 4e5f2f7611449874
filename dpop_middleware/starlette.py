"""Starlette (and any ASGI app): a pure ASGI middleware, and a backend for ``AuthenticationMiddleware``.

Middleware (works around *any* ASGI 3 application, not only Starlette's)::

    app = Starlette(routes=..., middleware=[
        Middleware(DPoPMiddleware, verifier=verifier, exempt_paths=["/health"], trusted_proxies=["10.0.0.0/8"]),
    ])
    # or, around anything:  app = DPoPMiddleware(asgi_app, verifier=verifier)

The principal lands in ``scope["dpop"]`` (``request.scope["dpop"]``, or :func:`get_principal`);
``None`` means anonymous on an optional path. Rejections are the core's exact responses. Fresh
``DPoP-Nonce`` values are added to successful responses (and to the WebSocket accept).

WebSocket: the upgrade request is verified as ``htm`` ``GET`` (``ws``/``wss`` count as
``http``/``https`` for ``htu``). A rejected upgrade gets the exact HTTP rejection when the server
offers the ``websocket.http.response`` extension, otherwise it is closed with code 1008 (policy
violation) before being accepted, which servers answer with a bare HTTP 403.

Auth backend, for Starlette's own ``AuthenticationMiddleware`` (``request.user``, ``request.auth``)::

    backend = DPoPAuthBackend(verifier, exempt_paths=["/health"])
    Middleware(DPoPAuthenticationMiddleware, backend=backend)
    # or the stock one, which then cannot send DPoP-Nonce on success:
    Middleware(AuthenticationMiddleware, backend=backend, on_error=DPoPAuthBackend.on_error)

``on_error`` is what makes the challenge exact: without it Starlette answers a failed authentication
with a plain-text 400. Starlette's own ``AuthenticationMiddleware`` closes a rejected WebSocket with
code 1000 whatever ``on_error`` says; :class:`DPoPAuthenticationMiddleware` sends the real rejection.

Scopes: ``path_scopes={"/admin": "admin"}`` on the middleware or backend, or decorate an endpoint
with :func:`requires_scopes` (never Starlette's ``requires``, whose failure is a bare 403 without
the ``insufficient_scope`` challenge).

Proxies: ``trusted_proxies`` / ``trusted_headers`` / ``public_url`` as in
:class:`~dpop_middleware.core.origin.ProxySettings`. From a trusted proxy only ``X-Forwarded-For``
and ``X-Forwarded-Proto`` are believed by default; list ``X-Forwarded-Host``/``-Port``/``-Prefix``
or ``Forwarded`` in ``trusted_headers`` only if the proxy sets (overwrites) them on every request,
since a header it passes through is the client's to choose.
Under uvicorn, its own ``--proxy-headers`` (on by default, trusting ``--forwarded-allow-ips``,
127.0.0.1 by default) rewrites ``scope["scheme"]`` and ``scope["client"]`` *before* this middleware
runs: the scheme is then already the public one, but once the proxy sends ``X-Forwarded-For`` the
peer we see is the original client, not the proxy, so our forwarded-header trust no longer applies
(fail closed: every forwarding header is ignored, the Host header is used). Either run uvicorn
with ``--no-proxy-headers`` and list the proxies (and the headers they set) here, or keep
uvicorn's and have the proxy pass the public ``Host`` through, or set ``public_url``.

Path rules see the decoded path below the mount point exactly as the router matches it; a path
with dot segments (``/admin/../public``, also sent as ``%2E%2E``) must satisfy a relaxing rule
(exempt, optional) both literally and normalized, and gets the scopes of either reading
(:class:`~dpop_middleware.core.paths.PathRules`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from .asgi import (
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
    route_path,
    send_rejection,
    with_response_headers,
)
from .core.binding import DPoPPrincipal
from .core.challenge import ErrorResponse
from .core.origin import ProxySettings
from .core.paths import PathRules
from .core.request import RequestInfo
from .verifier import AuthResult, DPoPVerifier

__all__ = [
    "DPoPAuthBackend",
    "DPoPAuthenticationError",
    "DPoPAuthenticationMiddleware",
    "DPoPMiddleware",
    "DPoPUser",
    "error_response",
    "get_principal",
    "requires_scopes",
]

F = TypeVar("F", bound=Callable[..., Any])

_REJECTION_KEY = "dpop.rejection"  # the backend's rejection, for a WebSocket (see DPoPAuthenticationMiddleware)


@dataclass(frozen=True)
class _Policy:
    """Everything an ASGI adapter precomputes: path rules and proxy settings."""

    rules: PathRules
    proxies: ProxySettings

    @classmethod
    def create(
        cls,
        *,
        required: bool,
        exempt_paths: Iterable[str],
        optional_paths: Iterable[str],
        path_scopes: Mapping[str, Iterable[str] | str] | None,
        trusted_proxies: Iterable[str] | str | None,
        public_url: str | None,
        trusted_headers: Iterable[str] | str | None,
    ) -> _Policy:
        rules = PathRules.create(
            required=required, exempt_paths=exempt_paths, optional_paths=optional_paths, path_scopes=path_scopes
        )
        return cls(rules, ProxySettings.create(trusted_proxies, public_url, trusted_headers))


async def _authenticate(verifier: DPoPVerifier, policy: _Policy, scope: Scope) -> AuthResult | None:
    """Run the verifier (and path scopes) for an http/websocket scope; ``None`` for an exempt path."""
    scope[VERIFIER_KEY] = verifier
    # The literal path, as the router sees it: PathRules weighs both readings.
    exempt, required, scopes = policy.rules.decide(route_path(scope))
    if exempt:
        scope[PRINCIPAL_KEY] = None
        return None
    return await authenticate_scope(verifier, scope, policy.proxies, required=required, scopes=scopes)


class DPoPMiddleware:
    """Pure ASGI middleware: verify every HTTP request and WebSocket upgrade, or answer the challenge.

    ``required``: whether paths without a rule need credentials. ``exempt_paths`` are never checked
    (health checks); ``optional_paths`` admit anonymous requests but still reject bad credentials;
    ``path_scopes`` maps a path to the scopes it needs. Rules are those of the WSGI adapter
    (:class:`dpop_middleware.core.paths.PathRules`): a rule covers its path and everything below it, by
    whole segments, matched against the decoded path below the mount point. ``trusted_proxies``,
    ``trusted_headers`` and ``public_url``: see the module docstring. Lifespan and any other
    non-HTTP scope pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: DPoPVerifier,
        required: bool = True,
        exempt_paths: Iterable[str] = (),
        optional_paths: Iterable[str] = (),
        path_scopes: Mapping[str, Iterable[str] | str] | None = None,
        trusted_proxies: Iterable[str] | str | None = None,
        public_url: str | None = None,
        trusted_headers: Iterable[str] | str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self._policy = _Policy.create(
            required=required,
            exempt_paths=exempt_paths,
            optional_paths=optional_paths,
            path_scopes=path_scopes,
            trusted_proxies=trusted_proxies,
            public_url=public_url,
            trusted_headers=trusted_headers,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        result = await _authenticate(self.verifier, self._policy, scope)
        if result is None:
            await self.app(scope, receive, send)
        elif result.rejection is not None:
            await send_rejection(scope, receive, send, result.rejection)
        else:
            await self.app(scope, receive, with_response_headers(send, result.response_headers))


def get_principal(conn: HTTPConnection) -> DPoPPrincipal | None:
    """The principal of this request (``None``: anonymous, exempt, or no DPoP layer ran)."""
    return cast("DPoPPrincipal | None", conn.scope.get(PRINCIPAL_KEY))


def error_response(rejection: ErrorResponse) -> Response:
    """The core's rejection as a Starlette response, every header kept (two challenges stay two)."""
    response = Response(rejection.body, status_code=rejection.status, media_type=rejection.content_type)
    for name, value in rejection.headers:
        response.headers.append(name, value)
    return response


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise TypeError("requires_scopes: the endpoint receives no Request")


def _scope_rejection(conn: HTTPConnection, scopes: tuple[str, ...]) -> ErrorResponse | None:
    verifier = conn.scope.get(VERIFIER_KEY)
    if not isinstance(verifier, DPoPVerifier):
        # A deployment error, not a request error: refuse loudly rather than skip the check.
        raise RuntimeError("requires_scopes needs DPoPMiddleware or DPoPAuthBackend in front of the endpoint")
    info = conn.scope.get(REQUEST_INFO_KEY)
    return verifier.authorize(get_principal(conn), scopes, info if isinstance(info, RequestInfo) else None)


def requires_scopes(*scopes: str) -> Callable[[F], F]:
    """Endpoint decorator: answer 403 ``insufficient_scope`` (with its challenge) unless granted.

    Works on sync and async Starlette endpoints, ``HTTPEndpoint`` methods and WebSocket endpoints
    (denied as :class:`DPoPMiddleware` denies an upgrade) behind :class:`DPoPMiddleware` or
    :class:`DPoPAuthBackend`. An anonymous request on an optional path
    gets the same 403: it holds no scope.
    """
    needed = tuple(scopes)

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                conn = _connection(args, kwargs)
                rejection = _scope_rejection(conn, needed)
                if rejection is None:
                    return await func(*args, **kwargs)
                if isinstance(conn, WebSocket):
                    await send_rejection(conn.scope, conn.receive, conn.send, rejection)
                    return None
                return error_response(rejection)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            rejection = _scope_rejection(_connection(args, kwargs), needed)
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
        required: bool = True,
        exempt_paths: Iterable[str] = (),
        optional_paths: Iterable[str] = (),
        path_scopes: Mapping[str, Iterable[str] | str] | None = None,
        trusted_proxies: Iterable[str] | str | None = None,
        public_url: str | None = None,
        trusted_headers: Iterable[str] | str | None = None,
    ) -> None:
        self.verifier = verifier
        self._policy = _Policy.create(
            required=required,
            exempt_paths=exempt_paths,
            optional_paths=optional_paths,
            path_scopes=path_scopes,
            trusted_proxies=trusted_proxies,
            public_url=public_url,
            trusted_headers=trusted_headers,
        )

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
