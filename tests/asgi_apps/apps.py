"""The four routes of ``adapter_cases`` as a Starlette app, a FastAPI app and a bare ASGI callable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from adapter_cases import STEP_UP, identity
from adapter_cases import Response as CaseResponse
from fastapi import Depends, FastAPI, Security
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from dpop_middleware import DPoPPrincipal, DPoPVerifier
from dpop_middleware.asgi import Receive, Scope, Send
from dpop_middleware.fastapi import DPoPBearer, DPoPHTTPException, dpop_exception_handler
from dpop_middleware.starlette import get_principal, requires_scopes, requires_step_up


def to_case_response(resp: httpx.Response) -> CaseResponse:
    headers: dict[str, list[str]] = {}
    for name, value in resp.headers.multi_items():
        headers.setdefault(name.lower(), []).append(value)
    try:
        payload = resp.json()
    except ValueError:
        payload = resp.text
    return CaseResponse(resp.status_code, headers, payload)


# -- Starlette -----------------------------------------------------------------------------------


async def protected(request: Request) -> Response:
    return JSONResponse(identity(get_principal(request)))


@requires_scopes("write")
async def scoped(request: Request) -> Response:
    return JSONResponse(identity(get_principal(request)))


@requires_step_up(**STEP_UP)  # type: ignore[arg-type]
async def stepped(request: Request) -> Response:
    return JSONResponse(identity(get_principal(request)))


def health(request: Request) -> Response:  # a sync endpoint: the middleware does not care
    return JSONResponse({"ok": True})


async def echo(request: Request) -> Response:
    return JSONResponse(
        {"path": request.url.path, "root_path": request.scope.get("root_path"), **identity(get_principal(request))}
    )


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(identity(websocket.scope.get("dpop")))
    await websocket.close()


def starlette_routes() -> list[Any]:
    return [
        Route("/protected", protected, methods=["GET", "POST"]),
        Route("/optional", protected),
        Route("/scoped", scoped),
        Route("/stepped", stepped),
        Route("/health", health),
        Route("/echo/{rest:path}", echo),
        WebSocketRoute("/ws", ws_endpoint),
    ]


def starlette_app(middleware: list[Middleware]) -> Starlette:
    return Starlette(routes=starlette_routes(), middleware=middleware)


# -- a bare ASGI callable (no framework at all) -------------------------------------------------


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every http request with the principal as JSON; ignores lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(identity(scope.get("dpop")))})
        await send({"type": "websocket.close", "code": 1000})
        return
    payload = {"ok": True} if scope["path"].endswith("/health") else identity(scope.get("dpop"))
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


# -- FastAPI -------------------------------------------------------------------------------------


def fastapi_app(verifier: DPoPVerifier, *, exact_errors: bool = False, **bearer_options: Any) -> FastAPI:
    dpop = DPoPBearer(verifier, **bearer_options)
    maybe = DPoPBearer(verifier, auto_error=False, **bearer_options)
    stepped_up = DPoPBearer(verifier, **STEP_UP, **bearer_options)
    app = FastAPI()
    if exact_errors:
        app.add_exception_handler(DPoPHTTPException, dpop_exception_handler)

    @app.get("/protected")
    async def protected_get(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return identity(principal)

    @app.post("/protected")
    async def protected_post(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return identity(principal)

    @app.get("/optional")
    async def optional_route(principal: DPoPPrincipal | None = Depends(maybe)) -> dict[str, Any]:
        return identity(principal)

    @app.get("/scoped")
    async def scoped_route(principal: DPoPPrincipal = Security(dpop, scopes=["write"])) -> dict[str, Any]:
        return identity(principal)

    @app.get("/stepped")
    async def stepped_route(principal: DPoPPrincipal = Depends(stepped_up)) -> dict[str, Any]:
        return identity(principal)

    @app.get("/health")
    async def health_route() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/files/{rest:path}")
    async def files_route(rest: str, principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"rest": rest, **identity(principal)}

    @app.get("/raw")
    async def raw_route(principal: DPoPPrincipal = Depends(dpop)) -> Response:
        return JSONResponse(identity(principal))

    return app


AppFactory = Callable[[DPoPVerifier], Any]
