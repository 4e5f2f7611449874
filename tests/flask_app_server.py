"""A Flask deployment for the real-server tests (gunicorn imports ``flask_app_server:application``).

The issuer's JWKS, issuer and audience come from the environment (``DPOP_TEST_*``). Three apps,
each configured through ``DPOP_*`` keys, are mounted with werkzeug's DispatcherMiddleware (and the
whole is usually served under gunicorn's ``SCRIPT_NAME`` too):

* ``/``    trusts every forwarding header from 127.0.0.1 (the simulated reverse proxy is the test
           itself), ``DPOP_TRUSTED_HEADERS`` listing them all;
* ``/d``   trusts 127.0.0.1 for the default headers only (X-Forwarded-For and X-Forwarded-Proto);
* ``/u``   trusts only 192.0.2.1 (a documentation address no request comes from): forwarded
           headers from 127.0.0.1 must be ignored;
* ``/pub`` has a configured public URL, which wins over Host and forwarded headers.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from wsgi_app_support import identity

from dpop_middleware.core.origin import FORWARDING_HEADERS
from dpop_middleware.flask import DPoP, current_dpop


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        DPOP_ISSUER=os.environ["DPOP_TEST_ISSUER"],
        DPOP_AUDIENCE=os.environ["DPOP_TEST_AUDIENCE"],
        DPOP_JWKS=json.loads(os.environ["DPOP_TEST_JWKS"]),
        DPOP_EXEMPT_PATHS=["/health"],
        **config,
    )
    dpop = DPoP(app)

    @app.route("/protected", methods=["GET", "POST"])
    def protected() -> dict[str, Any]:
        return identity(current_dpop._get_current_object())

    @app.get("/echo/<path:rest>")
    def echo(rest: str) -> dict[str, Any]:
        body = identity(current_dpop._get_current_object())
        body["path"] = request.path
        return body

    @app.get("/optional")
    @dpop.optional
    def optional() -> dict[str, Any]:
        return identity(current_dpop._get_current_object())

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    return app


application = DispatcherMiddleware(
    make_app(DPOP_TRUSTED_PROXIES=["127.0.0.1"], DPOP_TRUSTED_HEADERS=list(FORWARDING_HEADERS)),
    {
        "/d": make_app(DPOP_TRUSTED_PROXIES=["127.0.0.1"]),
        "/u": make_app(DPOP_TRUSTED_PROXIES="192.0.2.1"),
        "/pub": make_app(DPOP_PUBLIC_URL="https://public.example/base"),
    },
)
