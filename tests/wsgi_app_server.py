"""A bare WSGI deployment for the real-server tests (gunicorn imports ``wsgi_app_server:application``).

The same layout as ``flask_app_server`` with :class:`DPoPWSGIMiddleware` around a framework-free
callable: ``/`` trusts every forwarding header from 127.0.0.1, ``/d`` only the default ones
(X-Forwarded-For/-Proto) from 127.0.0.1, ``/u`` trusts only 192.0.2.1, ``/pub`` has a public URL.
"""

from __future__ import annotations

import os
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from wsgi_app_support import bare_app

from dpop_middleware import DPoPVerifier, JWTAccessTokenValidator
from dpop_middleware.core.origin import FORWARDING_HEADERS
from dpop_middleware.wsgi import DPoPWSGIMiddleware


def make_app(**options: Any) -> DPoPWSGIMiddleware:
    validator = JWTAccessTokenValidator(
        issuer=os.environ["DPOP_TEST_ISSUER"],
        audience=os.environ["DPOP_TEST_AUDIENCE"],
        jwks=os.environ["DPOP_TEST_JWKS"],
    )
    return DPoPWSGIMiddleware(
        bare_app, DPoPVerifier(validator), exempt_paths=["/health"], optional_paths=["/optional"], **options
    )


application = DispatcherMiddleware(
    make_app(trusted_proxies=["127.0.0.1"], trusted_headers=FORWARDING_HEADERS),
    {
        "/d": make_app(trusted_proxies=["127.0.0.1"]),
        "/u": make_app(trusted_proxies="192.0.2.1"),
        "/pub": make_app(public_url="https://public.example/base"),
    },
)
