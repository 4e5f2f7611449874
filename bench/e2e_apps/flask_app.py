"""Flask under gunicorn (sync workers): bare, raw signature check only (``floor``), or the ``DPoP`` extension."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from dpop_middleware.flask import DPoP

from .common import BODY, PATH, floor, hook, issuer_settings, protected, replay_store
from .floor import signature_ok

app = Flask(__name__)

if protected():
    issuer, audience, jwks = issuer_settings()
    app.config.update(
        DPOP_ISSUER=issuer,
        DPOP_AUDIENCE=audience,
        DPOP_JWKS=jwks,
        DPOP_REPLAY_STORE=replay_store(asynchronous=False),
    )
    DPoP(app)
elif floor():

    @app.before_request
    def raw_signature_check() -> tuple[str, int] | None:
        return None if signature_ok(request.headers.get("DPoP")) else ("bad proof", 401)

elif hook():

    @app.before_request
    def empty_hook() -> None:
        return None


@app.get(PATH)
def items() -> dict[str, Any]:
    return BODY
