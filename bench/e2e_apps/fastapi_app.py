"""FastAPI under uvicorn, with or without the ``DPoPBearer`` dependency on the endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from dpop_middleware.core.binding import DPoPPrincipal
from dpop_middleware.fastapi import DPoPBearer

from .common import BODY, PATH, protected, verifier

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

if protected():
    dpop = DPoPBearer(verifier(asynchronous=True))

    @app.get(PATH)
    async def items(principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:  # noqa: B008
        return BODY

else:

    @app.get(PATH)
    async def items_open() -> dict[str, Any]:
        return BODY
