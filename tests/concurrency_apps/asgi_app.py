"""A bare ASGI app calling ``DPoPVerifier.aauthenticate`` (run it under uvicorn --workers N)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from dpop_middleware import RequestInfo
from dpop_middleware.core.origin import rebuild_url

from .config import PROXIES, build_verifier

verifier = build_verifier(asynchronous=True)
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _request(scope: dict[str, Any]) -> RequestInfo:
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name, []).append(value)
    client = scope.get("client")
    url = rebuild_url(
        scheme=scope.get("scheme", "http"),
        host=(by_name.get("host") or [""])[0],
        root_path=scope.get("root_path", ""),
        path=scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
        peer=client[0] if client else None,
        headers=by_name,
        settings=PROXIES,
    )
    return RequestInfo(scope["method"], url, headers)


async def _send(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw += [(b"content-type", b"application/json"), (b"x-worker-pid", str(os.getpid()).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            close = getattr(verifier.replay_store, "aclose", None)
            if close is not None:
                await close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["path"] == "/health":
        return await _send(send, 200, [], b'{"ok": true}')
    if scope["path"] != "/protected":
        return await _send(send, 404, [], b"{}")
    result = await verifier.aauthenticate(_request(scope))
    if result.rejection is not None:
        rejection = result.rejection
        return await _send(send, rejection.status, list(rejection.headers), rejection.body)
    principal = result.principal
    body = json.dumps({"sub": principal.subject if principal else None, "pid": os.getpid()}).encode()
    return await _send(send, 200, list(result.response_headers), body)
