"""The FastAPI sample API: ``GET /api/me``, ``POST /api/notes`` (scope ``notes:write``), ``GET /healthz``
and a WebSocket ``/ws`` that echoes the caller's identity.

HTTP routes use the :class:`~dpop_middleware.fastapi.DPoPBearer` dependency (it also shows up in the
OpenAPI document). The WebSocket route is wrapped in :class:`~dpop_middleware.starlette.DPoPMiddleware`,
which verifies the upgrade request (``htm`` GET, ``htu`` with ``ws`` read as ``http``). The two never
see the same request, so no proof is checked twice (the second check would call it a replay).

CORS (for the browser sample, whose page comes from another origin): with ``CORS_ALLOW_ORIGINS`` set,
Starlette's ``CORSMiddleware`` wraps the whole app, so it answers preflights before any DPoP check
(a preflight carries neither ``Authorization`` nor ``DPoP``, by design) and puts the CORS headers on
every answer, 401 challenges included. See the browser sample's README for why each setting is there.

FastAPI reads the endpoints' annotations at run time, so this module does not use
``from __future__ import annotations`` (the dependencies are local to :func:`create_app`).
"""

import asyncio
import itertools
import os
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Security
from pydantic import BaseModel, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import WebSocketRoute, websocket_session
from starlette.websockets import WebSocket

from dpop_middleware import DPoPPrincipal
from dpop_middleware.fastapi import DPoPBearer, DPoPHTTPException, dpop_exception_handler
from dpop_middleware.starlette import DPoPMiddleware, get_principal, metadata_route

from ..common import SampleSettings, build_verifier, identity, proxy_values

__all__ = ["allowed_hosts_from_env", "cors_origins_from_env", "create_app"]

#: The hosts the sample answers for unless ``DPOP_ALLOWED_HOSTS`` says otherwise: local runs and tests.
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost", "testserver")

#: What a browser may send cross-origin, and what its scripts may read back. ``Authorization`` is
#: never covered by ``*``; ``DPoP-Nonce`` and ``WWW-Authenticate`` are not CORS-safelisted, so without
#: exposing them the page could not see a nonce challenge, nor answer it.
CORS_ALLOW_HEADERS = ("Authorization", "DPoP", "Content-Type")
CORS_EXPOSE_HEADERS = ("DPoP-Nonce", "WWW-Authenticate")


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class Note(NoteIn):
    id: int
    author: str | None


def cors_origins_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """``CORS_ALLOW_ORIGINS``: comma-separated origins (``scheme://host[:port]``) whose pages may call the API."""
    raw = (os.environ if environ is None else environ).get("CORS_ALLOW_ORIGINS", "")
    origins = [origin.strip() for origin in raw.split(",") if origin.strip()]
    for origin in origins:
        parts = urlsplit(origin)
        # An origin has no path, and "*" would let any page drive a user's key: name them one by one.
        if parts.scheme not in ("http", "https") or not parts.hostname or origin != f"{parts.scheme}://{parts.netloc}":
            raise ValueError(f"CORS_ALLOW_ORIGINS must list origins like https://app.example.com, not {origin!r}")
    return origins


def allowed_hosts_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """``DPOP_ALLOWED_HOSTS``: comma- or space-separated hosts (``.example.com`` for subdomains) whose
    ``Host`` the sample believes; default ``127.0.0.1 localhost testserver``. Not read when
    ``DPOP_PUBLIC_URL`` is set: the URL's host is then fixed."""
    raw = (os.environ if environ is None else environ).get("DPOP_ALLOWED_HOSTS")
    return raw.replace(",", " ").split() if raw is not None else list(DEFAULT_ALLOWED_HOSTS)


def create_app(
    settings: SampleSettings | None = None,
    *,
    validator: Any = None,
    cors_origins: Sequence[str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """Build the app. Without ``settings``, read the environment; ``validator`` replaces the remote one (tests).

    ``cors_origins`` (default: ``CORS_ALLOW_ORIGINS``) are the browser origins allowed to call the API;
    ``allowed_hosts`` (default: ``DPOP_ALLOWED_HOSTS``) the hosts it answers for.
    """
    if cors_origins is None:
        cors_origins = cors_origins_from_env()
    if allowed_hosts is None:
        allowed_hosts = allowed_hosts_from_env()
    if settings is None:
        settings = SampleSettings.from_env(default_port=8003)
    verifier = build_verifier(settings, validator=validator, asynchronous=True)
    # A pinned host: a proof captured on another API that accepts the same tokens, replayed here with
    # that API's Host, is refused (400) instead of matching the URL rebuilt from it.
    hosts = list(allowed_hosts)
    proxies = proxy_values(settings)  # the mutual-TLS proxy in front, if any (docs/mtls.md)
    dpop = DPoPBearer(verifier, public_url=settings.public_url, allowed_hosts=hosts, **proxies)

    app = FastAPI(title="dpop-middleware FastAPI sample")
    # Send the core's rejections verbatim (each WWW-Authenticate field apart, the core's JSON body).
    app.add_exception_handler(DPoPHTTPException, dpop_exception_handler)
    notes: list[Note] = []
    ids = itertools.count(1)
    lock = asyncio.Lock()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me")
    async def me(principal: Annotated[DPoPPrincipal, Depends(dpop)]) -> dict[str, Any]:
        return identity(principal)

    @app.post("/api/notes", status_code=201)
    async def create_note(
        note: NoteIn, principal: Annotated[DPoPPrincipal, Security(dpop, scopes=["notes:write"])]
    ) -> Note:
        async with lock:
            created = Note(id=next(ids), text=note.text, author=principal.subject)
            notes.append(created)
        return created

    async def echo(websocket: WebSocket) -> None:
        principal = get_principal(websocket)
        await websocket.accept()
        await websocket.send_json(identity(principal) if principal is not None else {})
        async for message in websocket.iter_text():
            await websocket.send_json({"echo": message, "sub": principal.subject if principal else None})

    # A plain Starlette route whose ASGI app is the DPoP middleware around the session: only /ws goes through it.
    ws_app = DPoPMiddleware(
        websocket_session(echo), verifier=verifier, public_url=settings.public_url, allowed_hosts=hosts, **proxies
    )
    app.router.routes.append(WebSocketRoute("/ws", ws_app))
    if verifier.resource_metadata is not None:
        # RFC 9728: the DPoPBearer routes are checked one by one, so the document is a route of its own.
        app.router.routes.append(metadata_route(verifier, path_scopes={"/api/notes": "notes:write"}))
    if cors_origins:
        # Added last = outermost: preflights are answered before any authentication runs, and the
        # CORS headers go on every response, so the page can read a 401 and its DPoP-Nonce.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            allow_credentials=False,  # no cookies: the token and the proof travel in headers
            max_age=600,
        )
    return app
