"""The Flask sample API: ``GET /api/me``, ``POST /api/notes`` (scope ``notes:write``), ``GET /healthz``.

Configuration is Flask's own (``app.config["DPOP_*"]``), filled from the environment by
:mod:`sample_projects.common`. Every view is DPoP-protected unless marked ``@dpop.exempt`` (the
extension's default, ``DPOP_DEFAULT = "required"``): a new view cannot be left open by forgetting a decorator.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from flask import Flask, g, jsonify, request
from flask.typing import ResponseReturnValue

from dpop_middleware.flask import DPoP

from ..common import SampleSettings, dpop_values, identity, proxy_values, replay_store

__all__ = ["create_app"]


def create_app(settings: SampleSettings | None = None, *, validator: Any = None) -> Flask:
    """Build the app. Without ``settings``, read the environment; ``validator`` replaces the remote one (tests)."""
    if settings is None:
        settings = SampleSettings.from_env(default_port=8002)
    app = Flask(__name__)
    app.config.update(
        **{f"DPOP_{name.upper()}": value for name, value in dpop_values(settings, validator=validator).items()},
    )
    app.config.update(
        DPOP_REPLAY_STORE=replay_store(settings),  # its messages then name the environment variable
        DPOP_PUBLIC_URL=settings.public_url,
        **{f"DPOP_{name.upper()}": value for name, value in proxy_values(settings).items()},
    )
    dpop = DPoP(app)
    notes: list[dict[str, Any]] = []
    lock = threading.Lock()
    ids = itertools.count(1)

    @app.get("/healthz")
    @dpop.exempt
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    @app.get("/api/me")
    def me() -> ResponseReturnValue:
        return identity(g.dpop)  # the DPoPPrincipal the extension attached

    @app.post("/api/notes")
    @dpop.required(scopes=["notes:write"])
    def create_note() -> ResponseReturnValue:
        payload = request.get_json(silent=True)
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > 1000:
            return {"error": "invalid_note", "error_description": "text: 1 to 1000 characters"}, 400
        with lock:
            note = {"id": next(ids), "text": text, "author": g.dpop.subject}
            notes.append(note)
        return jsonify(note), 201

    return app
