"""Flask under gunicorn (sync workers), with or without the ``DPoP`` extension enforcing every view."""

from __future__ import annotations

from typing import Any

from flask import Flask

from dpop_middleware.flask import DPoP

from .common import BODY, PATH, issuer_settings, protected, replay_store

app = Flask(__name__)

if protected():
    issuer, audience, jwks = issuer_settings()
    app.config.update(
        DPOP_ISSUER=issuer,
        DPOP_AUDIENCE=audience,
        DPOP_JWKS=jwks,
        DPOP_REPLAY_STORE=replay_store(asynchronous=False),
        DPOP_ENFORCE_ALL=True,
    )
    DPoP(app)


@app.get(PATH)
def items() -> dict[str, Any]:
    return BODY
