"""ASGI plumbing shared by the Starlette middleware, the Starlette auth backend and FastAPI.

It only *translates*: an ASGI scope becomes a :class:`~dpop_middleware.core.request.RequestInfo`
(the URL rebuilt by :func:`dpop_middleware.core.origin.rebuild_url`), and a core
:class:`~dpop_middleware.core.challenge.ErrorResponse` becomes ASGI messages. Every decision stays in
the core. No framework import: this works for any ASGI 3 server and application.
:func:`authenticate_scope` is the one call every ASGI adapter makes: translate, authenticate with
the route's policy, and record the outcome in the scope (so that a second DPoP layer on the same
request reuses it instead of verifying the proof again, which would be a replay).

Mount prefix: ASGI servers disagree on whether ``scope["path"]`` includes ``scope["root_path"]``.
The ASGI spec (uvicorn, Starlette's ``Mount``) says it does; older servers, and Starlette's
``TestClient(root_path=...)``, send the path *below* the mount point. Like Starlette's own router, we treat ``path`` as
including the root when it starts with ``root_path`` at a segment boundary, and as the path below it
otherwise. ``raw_path`` (the bytes the client sent) is preferred over ``path`` whenever it decodes to
the same path, because it keeps the client's percent-encoding (``%21`` and ``!`` differ for htu, and
``a%2Fb`` is one segment where ``a/b`` is two): the core's rule, :func:`dpop_middleware.core.target.client_paths`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import replace
from typing import Any

from .core.challenge import ErrorResponse
from .core.client_cert import presented_certificate
from .core.errors import InvalidRequestError
from .core.origin import FORWARDING_HEADERS, ProxySettings, rebuild_url
from .core.request import RequestInfo, is_cors_answer, is_cors_preflight
from .core.resource_metadata import MetadataAnswer, PublishedMetadata
from .core.step_up import StepUp
from .core.target import client_paths
from .verifier import AuthResult, DPoPVerifier

__all__ = [
    "PRINCIPAL_KEY",
    "REQUEST_INFO_KEY",
    "RESPONSE_HEADERS_KEY",
    "VERIFIER_KEY",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "authenticate_scope",
    "checked_verifier",
    "is_preflight",
    "preflight_send",
    "request_info",
    "route_path",
    "send_metadata",
    "send_rejection",
    "serve_metadata",
    "with_response_headers",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = tuple[str, str]

#: ``scope["dpop"]``: the :class:`~dpop_middleware.core.binding.DPoPPrincipal`, or ``None`` (anonymous).
PRINCIPAL_KEY = "dpop"
#: ``scope["dpop.verifier"]``: the verifier that authenticated the request (for scope checks).
VERIFIER_KEY = "dpop.verifier"
#: ``scope["dpop.response_headers"]``: headers (``DPoP-Nonce``) owed to the eventual response.
RESPONSE_HEADERS_KEY = "dpop.response_headers"
#: ``scope["dpop.request_info"]``: the request as the verifier saw it (for later scope checks' logs).
REQUEST_INFO_KEY = "dpop.request_info"
#: ``scope["dpop.outcome"]``: what the verifier reported for it (:attr:`AuthResult.outcome`).
OUTCOME_KEY = "dpop.outcome"

_ABSENT = object()  # a scope without "app_root_path" (no Starlette Mount above us)


def _under(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


def _split_mount(root_path: object, path: object, app_root_path: object) -> tuple[str, str]:
    """``(root_path, path below it)``, both decoded, whichever convention the server follows.

    Starlette's ``Mount`` appends the mount point to ``root_path`` and keeps the server's own root in
    ``app_root_path``; that tells which convention the *server* used even below a mount (Starlette's
    ``TestClient`` sends a path without its ``root_path``, uvicorn a path with it).
    """
    root = str(root_path or "").rstrip("/")
    path = str(path or "")
    server_root = root if app_root_path is _ABSENT else str(app_root_path or "").rstrip("/")
    full = path if _under(path, server_root) else server_root + path
    if _under(full, root):
        return root, full[len(root) :]
    return root, path  # an inconsistent scope: read path as the path below root_path


@functools.lru_cache(maxsize=2048)
def _paths(root_path: object, path: object, app_root_path: object, raw_path: object) -> tuple[str, str, str]:
    """``(route path, root_path, path below it)``, the last two percent-encoded for :func:`rebuild_url`.

    Cached on the scope's own values, so that a path seen before costs one lookup.
    """
    root, below = _split_mount(root_path, path, app_root_path)
    # The ASGI spec's raw_path is bytes; anything else is no raw target.
    raw = bytes(raw_path).decode("latin-1").partition("?")[0] if isinstance(raw_path, (bytes, bytearray)) else None
    return ("/" + below.lstrip("/"), *client_paths(root, below, raw, "utf-8"))


def _scope_paths(scope: Scope) -> tuple[str, str, str]:
    try:
        return _paths(
            scope.get("root_path"), scope.get("path"), scope.get("app_root_path", _ABSENT), scope.get("raw_path")
        )
    except TypeError:  # an unhashable value (a bytearray raw_path): not cached
        args = (scope.get("root_path"), scope.get("path"), scope.get("app_root_path", _ABSENT), scope.get("raw_path"))
        return _paths.__wrapped__(*args)


def route_path(scope: Scope) -> str:
    """The decoded path below the mount point, as the router sees it, for the route policy
    (:class:`dpop_middleware.core.routes.RoutePolicy`, which also weighs its dot-segment-free form)."""
    try:
        return _scope_paths(scope)[0]
    except UnicodeError:  # a path that cannot be percent-encoded: request_info refuses it later (400)
        below = _split_mount(scope.get("root_path"), scope.get("path"), scope.get("app_root_path", _ABSENT))[1]
        return "/" + below.lstrip("/")


def full_path(scope: Scope) -> str:
    """The decoded path from the host on, mount prefix included: where a well-known URL is matched."""
    root, below = _split_mount(scope.get("root_path"), scope.get("path"), scope.get("app_root_path", _ABSENT))
    return root + "/" + below.lstrip("/")


async def send_metadata(send: Send, answer: MetadataAnswer) -> None:
    """Send the core's answer for the RFC 9728 document (200 or 405) as is."""
    await send({"type": "http.response.start", "status": answer.status, "headers": _encode(answer.headers)})
    await send({"type": "http.response.body", "body": answer.body})


async def serve_metadata(published: PublishedMetadata | None, scope: Scope, send: Send) -> bool:
    """Answer an ``http`` request for the metadata document; ``False`` (nothing sent) for any other."""
    if published is None or scope.get("type") != "http" or not published.serves(full_path(scope)):
        return False
    await send_metadata(send, published.answer(str(scope.get("method") or "GET")))
    return True


def _host(scope: Scope, hosts: list[str]) -> str:
    if hosts:
        # An unusable Host is refused by the core (rebuild_url empties it; the verifier answers 400).
        return hosts[0].strip()
    server = scope.get("server")
    if server and server[0]:
        name, port = str(server[0]), server[1]
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        return f"{name}:{port}" if port is not None else name
    return ""


# What request_info does with each header it reads, by lower-case name; every other header is skipped.
_CREDENTIAL, _HOST_HEADER, _FORWARDING_HEADER = 1, 2, 3
_HEADER_ROLES: dict[bytes, int] = {
    b"authorization": _CREDENTIAL,
    b"dpop": _CREDENTIAL,
    b"host": _HOST_HEADER,
    **{name.encode("latin-1"): _FORWARDING_HEADER for name in FORWARDING_HEADERS},
}


def request_info(scope: Scope, settings: ProxySettings, *, method: str | None = None) -> RequestInfo:
    """Translate an ``http`` or ``websocket`` scope into the core's :class:`RequestInfo`.

    ``method`` overrides the scope's (a WebSocket upgrade is verified as ``GET``). Only what the core
    reads is decoded (latin-1, like every ASGI framework): ``Authorization`` and ``DPoP`` as separate
    pairs per field, ``Host``, and the forwarding headers when a trusted proxy may have sent them.
    """
    pairs: list[Header] = []
    hosts: list[str] = []
    forwarded: dict[str, list[str]] = {}
    trusting = settings.reads_forwarding_headers
    roles = _HEADER_ROLES
    cert_header = settings.client_cert_header.encode("latin-1") if settings.client_cert_header else None
    certs: list[str] = []
    for raw_name, raw_value in scope.get("headers") or ():
        # ASGI names should be lower-case bytes already; lower() keeps us right when they are not.
        name = raw_name.lower() if raw_name.__class__ is bytes else bytes(raw_name).lower()
        role = roles.get(name)
        if role is None:
            if name == cert_header:
                certs.append(bytes(raw_value).decode("latin-1"))
            continue
        if role == _CREDENTIAL:
            pairs.append((name.decode("latin-1"), bytes(raw_value).decode("latin-1")))
        elif role == _HOST_HEADER:
            hosts.append(bytes(raw_value).decode("latin-1"))
        elif trusting:
            forwarded.setdefault(name.decode("latin-1"), []).append(bytes(raw_value).decode("latin-1"))
    _, root_path, path = _scope_paths(scope)
    client = scope.get("client")
    peer = str(client[0]) if client else None
    cert = None
    tls = (scope.get("extensions") or {}).get("tls")
    if certs or tls:
        cert = presented_certificate(
            header_values=certs, peer_trusted=settings.is_trusted(peer), header_encoding=settings.client_cert_format,
            server_cert=_tls_client_cert(tls),
        )  # fmt: skip
    url = rebuild_url(
        scheme=str(scope.get("scheme") or ("ws" if scope.get("type") == "websocket" else "http")),
        host=_host(scope, hosts),
        root_path=root_path,
        path=path,
        peer=peer,
        headers=forwarded,
        settings=settings,
    )
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    if query:
        # Kept so that the core can refuse an access token sent in the query string.
        url = f"{url}?{query}"
    return RequestInfo(method or str(scope.get("method") or "GET"), url, pairs, cert)


def _tls_client_cert(tls: object) -> str | None:
    """The client's certificate (PEM) from the ASGI ``tls`` extension: the first of ``client_cert_chain``."""
    chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    if isinstance(chain, (list, tuple)) and chain and isinstance(chain[0], str):
        return chain[0]
    return None


def checked_verifier(verifier: object, owner: str) -> DPoPVerifier:
    """``verifier``, once it is known to be a :class:`DPoPVerifier`; a ``TypeError`` at start-up otherwise.

    A token validator passed where the verifier belongs would otherwise be accepted and fail (500)
    on every request. ``owner`` is how the user spelled the call, e.g. ``"DPoPBearer"``.
    """
    if isinstance(verifier, DPoPVerifier):
        return verifier
    raise TypeError(
        f"{owner} expects a DPoPVerifier, not {type(verifier).__name__}; build one from your token validator: "
        f"{owner.partition('(')[0]}(DPoPVerifier(validator), ...), e.g. with "
        "JWTAccessTokenValidator(issuer=..., audience=..., jwks=...) or IntrospectionValidator(...)"
    )


def is_preflight(scope: Scope) -> bool:
    """Whether an ``http`` scope is a CORS preflight (:func:`dpop_middleware.core.request.is_cors_preflight`)."""
    if scope.get("type") != "http" or scope.get("method") != "OPTIONS":
        return False
    names = ((bytes(name).decode("latin-1"), "") for name, _ in scope.get("headers") or ())
    return is_cors_preflight("OPTIONS", names)


def preflight_send(send: Send) -> Send:
    """A ``send`` for a preflight passed to the app: only a CORS layer's answer goes out.

    Any other response (:func:`dpop_middleware.core.request.is_cors_answer`) is replaced by an
    empty 200 and its body dropped, so a route that ignores the method leaks nothing.
    """
    state = {"cors": True}

    async def wrapped(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = [(bytes(n).decode("latin-1"), "") for n, _ in message.get("headers") or ()]
            state["cors"] = is_cors_answer(headers)
            if not state["cors"]:
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
                return
        elif kind == "http.response.body" and not state["cors"]:
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send(message)

    return wrapped


def _rendered(verifier: DPoPVerifier, result: AuthResult, debug: bool | None) -> AuthResult:
    """``result`` with its rejection rendered in ``debug`` (``None``: as the verifier rendered it)."""
    rejection = result.rejection
    if rejection is None or debug is None or debug == verifier.config.debug:
        return result
    return replace(result, rejection=verifier.render(rejection.error, debug=debug))


async def authenticate_scope(
    verifier: DPoPVerifier,
    scope: Scope,
    settings: ProxySettings,
    *,
    required: bool = True,
    scopes: tuple[str, ...] = (),
    step_up: StepUp | None = None,
    debug: bool | None = None,
) -> AuthResult:
    """Translate an ``http``/``websocket`` scope and run :meth:`DPoPVerifier.aauthenticate`.

    A WebSocket upgrade is verified as ``GET`` (the ``htm`` its proof signs). A scope that cannot be
    translated is the client's doing: it gets the core's ``400 invalid_request``, never a 500. When
    the request goes on (accepted, anonymous, or only reported in ``report_only``), ``scope["dpop"]``
    holds the principal (``None``: anonymous), ``scope["dpop.verifier"]`` the verifier and
    ``scope["dpop.request_info"]`` the translated request. ``debug``: render a rejection with (or
    without) the core's diagnostics whatever the verifier's own ``debug`` says; ``None`` keeps it.
    """
    # A WebSocket handshake is an HTTP GET: that is the htm its proof signs.
    method = "GET" if scope.get("type") == "websocket" else None
    info: RequestInfo | None
    try:
        info = request_info(scope, settings, method=method)
    except (ValueError, UnicodeError):
        info = None
        bad = InvalidRequestError("bad_request_url", "Request URL cannot be determined")
        result = verifier.reject(bad, None)
    else:
        result = await verifier.aauthenticate(info, required=required, scopes=scopes, step_up=step_up)
    if result.rejection is None:
        # Set whenever the request goes on, so that an endpoint reading scope["dpop"] finds None
        # rather than a KeyError (report_only lets even an untranslatable request through).
        scope[VERIFIER_KEY] = verifier
        scope[PRINCIPAL_KEY] = result.principal
        scope[OUTCOME_KEY] = result.outcome
        if info is not None:
            scope[REQUEST_INFO_KEY] = info
        return result
    return _rendered(verifier, result, debug)


def _encode(headers: Iterable[Header]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_rejection(scope: Scope, receive: Receive, send: Send, rejection: ErrorResponse) -> None:
    """Send the core's rejection verbatim: an HTTP response, or the WebSocket equivalent.

    WebSocket: when the server supports the ``websocket.http.response`` extension the client gets
    the very same HTTP response (status, challenge, body) instead of the upgrade; otherwise the
    handshake is refused with ``websocket.close`` code 1008 (policy violation), which servers turn
    into an HTTP 403 without our headers: the spec leaves no other way.
    """
    headers = _encode(rejection.headers)
    headers.append((b"content-type", rejection.content_type.encode()))
    headers.append((b"content-length", str(len(rejection.body)).encode()))
    if scope.get("type") == "websocket":
        # The first message of a WebSocket is websocket.connect; we answer it, so we read it.
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": rejection.status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": rejection.body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "DPoP authentication failed"})
        return
    await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
    await send({"type": "http.response.body", "body": rejection.body})


def with_response_headers(send: Send, headers: Sequence[Header]) -> Send:
    """Wrap ``send`` so that ``headers`` are added to the response start (or WebSocket accept)."""
    if not headers:
        return send
    extra = _encode(headers)

    async def sender(message: Message) -> None:
        if message.get("type") in ("http.response.start", "websocket.accept"):
            message = dict(message)
            message["headers"] = [*(message.get("headers") or ()), *extra]
        await send(message)

    return sender
