"""The app uvicorn serves in ``test_asgi_uvicorn``: every ASGI integration, each under its own mount.

Configured from the environment by the test (the issuer's JWKS is generated at test time):
``DPOP_TEST_ISSUER``, ``DPOP_TEST_AUDIENCE``, ``DPOP_TEST_JWKS``. Mounts:

* ``/trusted``   Starlette app, ``DPoPMiddleware(trusted_proxies="127.0.0.1")`` believing every
                 forwarding header (``trusted_headers=FORWARDING_HEADERS``)
* ``/proto-only`` the same, but with the default ``trusted_headers`` (X-Forwarded-For/-Proto only)
* ``/untrusted`` Starlette app, ``DPoPMiddleware`` trusting no proxy
* ``/public``    Starlette app, ``DPoPMiddleware(public_url="https://api.example.com/base")``
* ``/bare``      a bare ASGI callable inside ``DPoPMiddleware``
* ``/backend``   Starlette app behind ``DPoPAuthenticationMiddleware(DPoPAuthBackend(...))``
* ``/fastapi``   FastAPI with ``DPoPBearer(trusted_proxies="127.0.0.1")``, every forwarding header
* ``/backend-proxy`` ``DPoPAuthBackend(trusted_proxies="127.0.0.1")``, every forwarding header
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from asgi_apps.apps import bare_app, fastapi_app, starlette_app
from dpop_middleware import DPoPVerifier, JWTAccessTokenValidator
from dpop_middleware.core.origin import FORWARDING_HEADERS
from dpop_middleware.starlette import DPoPAuthBackend, DPoPAuthenticationMiddleware, DPoPMiddleware

verifier = DPoPVerifier(
    JWTAccessTokenValidator(
        issuer=os.environ["DPOP_TEST_ISSUER"],
        audience=os.environ["DPOP_TEST_AUDIENCE"],
        jwks=os.environ["DPOP_TEST_JWKS"],
    )
)
paths = {"exempt_paths": ["/health"], "optional_paths": ["/optional"]}
behind_proxy = {"trusted_proxies": "127.0.0.1", "trusted_headers": FORWARDING_HEADERS}


def protected(**options: object) -> DPoPMiddleware:
    return DPoPMiddleware(starlette_app([]), verifier=verifier, **paths, **options)  # type: ignore[arg-type]


app = Starlette(
    routes=[
        Mount("/trusted", app=protected(**behind_proxy)),
        Mount("/proto-only", app=protected(trusted_proxies="127.0.0.1")),
        Mount("/untrusted", app=protected()),
        Mount("/public", app=protected(public_url="https://api.example.com/base")),
        Mount("/bare", app=DPoPMiddleware(bare_app, verifier=verifier, **paths)),  # type: ignore[arg-type]
        Mount(
            "/backend",
            app=starlette_app([Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **paths))]),
        ),
        Mount(
            "/backend-proxy",
            app=starlette_app(
                [Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **paths, **behind_proxy))]
            ),
        ),
        Mount("/fastapi", app=fastapi_app(verifier, **behind_proxy)),
    ]
)
