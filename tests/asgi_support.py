"""Drive an ASGI application directly, without a server or a test client."""

from __future__ import annotations

from typing import Any

from dpop_middleware.asgi import Message, Scope

EMPTY_REQUEST: Message = {"type": "http.request", "body": b""}


def http_scope(
    path: str = "/protected",
    *,
    root_path: str = "",
    raw_path: bytes | None = None,
    app_root_path: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    host: str | None = "api.test",
    client: tuple[str, int] | None = ("203.0.113.9", 5000),
    server: tuple[str, int] | None = ("10.0.0.1", 8000),
    scheme: str = "http",
    method: str = "GET",
    kind: str = "http",
    query: bytes = b"",
    extensions: dict[str, Any] | None = None,
) -> Scope:
    """An ASGI ``http`` (or ``websocket``) scope; ``None`` leaves the Host header or ``server`` out."""
    pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
    if host is not None:
        pairs.insert(0, (b"host", host.encode()))
    scope: Scope = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "scheme": scheme,
        "path": path,
        "root_path": root_path,
        "query_string": query,
        "headers": pairs,
        "client": client,
        "extensions": extensions or {},
    }
    if server is not None:
        scope["server"] = server
    if kind == "http":
        scope["method"] = method
    if raw_path is not None:
        scope["raw_path"] = raw_path
    if app_root_path is not None:
        scope["app_root_path"] = app_root_path
    return scope


async def call_asgi(app: Any, scope: Scope, incoming: list[Message] | None = None) -> list[Message]:
    """Run ``app`` on ``scope`` and return every message it sent, in order.

    The client sends ``incoming``, then disconnects; without ``incoming`` every receive gets an
    empty request body (a request whose client never goes away).
    """
    sent: list[Message] = []
    queue = list(incoming) if incoming is not None else None

    async def receive() -> Message:
        if queue is None:
            return EMPTY_REQUEST
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
