"""The forward-auth ASGI app: one answer per check request, 200 with identity headers or the refusal.

It never serves the API itself: the gateway asks, we verify the original request (read by
:mod:`~dpop_middleware.gateway.original`, its URL rebuilt by the one URL core, the proof's ``jti``
recorded in the replay store by :class:`~dpop_middleware.verifier.DPoPVerifier`) and answer:

* ``200`` with :data:`IDENTITY_HEADERS` for the upstream (and ``DPoP-Nonce`` when a fresh nonce is
  due); an exempt route, a CORS preflight, or an optional route without credentials gets ``200``
  with them empty;
* the verifier's own rejection otherwise (400, 401, 403 or 503 with its challenge, ``DPoP-Nonce``
  and ``Retry-After``), rendered by :mod:`dpop_middleware.core.challenge`.

A check request from an address that is not a trusted proxy is refused (400) without reading a
single forwarding header: a client that reaches us directly picks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote, unquote_to_bytes

from ..asgi import Receive, Scope, Send, send_rejection
from ..core.binding import DPoPPrincipal
from ..core.challenge import ErrorResponse
from ..core.errors import InvalidRequestError
from ..core.origin import rebuild_url
from ..core.request import RequestInfo, is_cors_preflight
from ..core.target import client_paths
from .config import GatewayConfig
from .original import READ_HEADERS, OriginalRequestError, read_original

__all__ = ["IDENTITY_HEADERS", "GatewayApp", "identity_headers"]

logger = logging.getLogger("dpop_middleware")

#: The headers a 200 carries for the upstream, by what they hold: all of them on every 200, empty
#: when there is no value (an exempt route, an anonymous request), so that a gateway copying them
#: replaces whatever the client sent. Values that are not printable ASCII are percent-encoded as
#: UTF-8 (a header line must stay one line of ASCII).
IDENTITY_HEADERS = {
    "subject": "X-DPoP-Subject",
    "client_id": "X-DPoP-Client-Id",
    "scopes": "X-DPoP-Scopes",
    "jkt": "X-DPoP-Jkt",
    "token_jti": "X-DPoP-Token-Jti",
    "scheme": "X-DPoP-Scheme",
}
# Visible ASCII and inner spaces stand for themselves, but "%"; controls and non-ASCII are escaped.
_HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")
_CREDENTIALS = frozenset({"authorization", "dpop"})
_NO_STORE = (b"cache-control", b"no-store")


def _header_value(value: object) -> str:
    if not isinstance(value, str):
        return ""
    encoded = quote(value, safe=_HEADER_SAFE)
    # A header value's outer spaces are not part of it (RFC 9110 §5.5): escape them too.
    stripped = encoded.strip(" ")
    if stripped == encoded:
        return encoded
    if not stripped:
        return "%20" * len(encoded)
    head = len(encoded) - len(encoded.lstrip(" "))
    tail = len(encoded) - len(encoded.rstrip(" "))
    return "%20" * head + stripped + "%20" * tail


def identity_headers(principal: DPoPPrincipal | None) -> list[tuple[str, str]]:
    """The :data:`IDENTITY_HEADERS` for ``principal`` (``None``: anonymous, all empty), percent-encoded."""
    if principal is None:
        return [(name, "") for name in IDENTITY_HEADERS.values()]
    facts: Mapping[str, object] = {
        "subject": principal.subject,
        "client_id": principal.client_id,
        "scopes": " ".join(sorted(principal.scopes)),
        "jkt": principal.jkt,
        "token_jti": principal.claims.get("jti"),
        "scheme": principal.scheme,
    }
    return [(name, _header_value(facts[key])) for key, name in IDENTITY_HEADERS.items()]


def _latin1(raw: object) -> str:
    return bytes(raw).decode("latin-1") if isinstance(raw, (bytes, bytearray)) else ""


class GatewayApp:
    """The ASGI app; build it with :func:`dpop_middleware.gateway.create_app`."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # nothing to start or stop (lifespan); a WebSocket is never accepted
        headers, rejection = await self._check(scope)
        if rejection is not None:
            await send_rejection(scope, receive, send, rejection)
            return
        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        encoded += [_NO_STORE, (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": encoded})
        await send({"type": "http.response.body", "body": b""})

    async def _check(self, scope: Scope) -> tuple[list[tuple[str, str]], ErrorResponse | None]:
        config = self.config
        verifier = config.verifier
        client = scope.get("client")
        peer = str(client[0]) if client else None
        if not config.proxy.is_trusted(peer):
            error = InvalidRequestError("untrusted_gateway", "Check requests are accepted from the gateway only")
            logger.warning("dpop gateway: check request from %s, which is not in trusted_proxies", peer)
            return [], verifier.refuse(error)
        credentials: list[tuple[str, str]] = []
        read: list[tuple[str, str]] = []
        for raw_name, raw_value in scope.get("headers") or ():
            name = _latin1(raw_name).lower()
            if name in _CREDENTIALS:
                credentials.append((name, _latin1(raw_value)))
            elif name in READ_HEADERS:
                read.append((name, _latin1(raw_value)))
        query = _latin1(scope.get("query_string") or b"")
        own_target = _latin1(scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace"))
        try:
            original = read_original(
                config.style,
                read,
                request_method=str(scope.get("method") or "GET"),
                request_target=f"{own_target.partition('?')[0]}?{query}" if query else own_target,
            )
            # The path as an ASGI server decodes it (UTF-8, U+FFFD for bytes that are not), so that
            # the URL core recognises the raw target as the same path and keeps its spelling.
            decoded = unquote_to_bytes(original.raw_path.encode("latin-1")).decode("utf-8", "replace")
            root, path = client_paths("", decoded, original.raw_path, "utf-8")
            url = rebuild_url(
                scheme=original.proto or "http",
                host=original.host or "",
                root_path=root,
                path=path,
                peer=None,  # already judged above; the gateway's headers are the request here
                headers={},
                settings=config.proxy,
            )
        except (OriginalRequestError, ValueError, UnicodeError) as exc:
            error = InvalidRequestError("bad_original_request", "The original request cannot be determined")
            logger.info("dpop gateway: %s", exc)
            return [], verifier.refuse(error)
        route = config.routes.decide(decoded)
        preflight = config.pass_cors_preflight and is_cors_preflight(
            original.method, ((_latin1(name), "") for name, _ in scope.get("headers") or ())
        )
        if route.exempt or preflight:  # a preflight passes only when the operator says the upstream expects it
            return identity_headers(None), None
        info = RequestInfo(original.method, f"{url}?{original.query}" if original.query else url, credentials)
        result = await verifier.aauthenticate(info, required=route.required, scopes=route.scopes, step_up=route.step_up)
        if result.rejection is not None:
            return [], result.rejection
        return [*result.response_headers, *identity_headers(result.principal)], None
