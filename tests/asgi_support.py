"""Drive an ASGI application directly, without a server or a test client."""

from __future__ import annotations

from typing import Any

from dpop_middleware.asgi import Message, Scope

EMPTY_REQUEST: Message = {"type": "http.request", "body": b""}


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
