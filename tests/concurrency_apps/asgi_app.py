"""The Starlette adapter (pure ASGI ``DPoPMiddleware``) serving ``/protected``; run it under uvicorn workers."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dpop_middleware.starlette import DPoPMiddleware, get_principal

from .config import build_verifier


def _json(body: dict[str, object]) -> JSONResponse:
    return JSONResponse(body, headers={"X-Worker-Pid": str(os.getpid())})


async def health(request: Request) -> JSONResponse:
    return _json({"ok": True})


async def protected(request: Request) -> JSONResponse:
    principal = get_principal(request)
    return _json({"sub": principal.subject if principal else None, "pid": os.getpid()})


class _TagWorker:
    """Adds X-Worker-Pid to rejections too, so the test can aim at every worker."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        async def tagged(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers.append((b"x-worker-pid", str(os.getpid()).encode()))
                message = {**message, "headers": headers}
            await send(message)  # type: ignore[operator]

        await self.app(scope, receive, tagged)  # type: ignore[operator]


app = Starlette(
    routes=[Route("/health", health), Route("/protected", protected, methods=["GET", "POST"])],
    middleware=[
        Middleware(_TagWorker),
        Middleware(DPoPMiddleware, verifier=build_verifier(asynchronous=True), exempt_paths=["/health"]),
    ],
)
