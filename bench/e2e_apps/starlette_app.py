"""Starlette under uvicorn: bare, with the raw signature check only (``floor``), or with ``DPoPMiddleware``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dpop_middleware.starlette import DPoPMiddleware

from .common import BODY, PATH, floor, hook, protected, verifier
from .floor import signature_ok


async def items(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


class FloorMiddleware:
    """Pure ASGI, like ``DPoPMiddleware``: the raw signature check of the proof, nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            proof = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"dpop"), None)
            if not signature_ok(proof):
                await PlainTextResponse("bad proof", status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HookMiddleware:
    """Pure ASGI, like ``DPoPMiddleware``, and does nothing (``hook``: the price of any middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


middleware = []
if protected():
    middleware = [Middleware(DPoPMiddleware, verifier=verifier(asynchronous=True))]
elif floor():
    middleware = [Middleware(FloorMiddleware)]
elif hook():
    middleware = [Middleware(HookMiddleware)]
app = Starlette(routes=[Route(PATH, items)], middleware=middleware)
