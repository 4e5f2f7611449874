"""FastAPI under uvicorn: bare, a raw signature check dependency (``floor``), or ``DPoPBearer``."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import SecurityScopes

from dpop_middleware.core.binding import DPoPPrincipal
from dpop_middleware.fastapi import DPoPBearer

from .common import BODY, PATH, floor, hook, protected, verifier
from .floor import signature_ok

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

if protected():
    dpop = DPoPBearer(verifier(asynchronous=True))

    @app.get(PATH)
    async def items(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:  # noqa: B008
        return BODY

elif floor():

    async def raw_signature_check(request: Request) -> None:
        if not signature_ok(request.headers.get("dpop")):
            raise HTTPException(401, "bad proof")

    @app.get(PATH)
    async def items_floor(_: None = Depends(raw_signature_check)) -> dict[str, Any]:
        return BODY

elif hook():

    class EmptyDependency:
        """Declares what ``DPoPBearer`` declares, does nothing: the price of such a dependency."""

        async def __call__(self, request: Request, response: Response, security_scopes: SecurityScopes) -> None:
            return None

    @app.get(PATH)
    async def items_hook(_: None = Depends(EmptyDependency())) -> dict[str, Any]:
        return BODY

else:

    @app.get(PATH)
    async def items_open() -> dict[str, Any]:
        return BODY
