"""Starlette under uvicorn, with or without the pure ASGI ``DPoPMiddleware``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dpop_middleware.starlette import DPoPMiddleware

from .common import BODY, PATH, protected, verifier


async def items(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


middleware = [Middleware(DPoPMiddleware, verifier=verifier(asynchronous=True))] if protected() else []
app = Starlette(routes=[Route(PATH, items)], middleware=middleware)
