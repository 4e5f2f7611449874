"""A WSGI app for gunicorn serving TLS itself (``tests/test_mtls_gunicorn.py``): the verifier takes
the client certificate from gunicorn's TLS socket, no proxy involved."""

from __future__ import annotations

import json
import os
from typing import Any

from dpop_middleware import DPoPVerifier, JWTAccessTokenValidator
from dpop_middleware.wsgi import DPoPWSGIMiddleware


def _me(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    principal = environ["dpop"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"x5t": principal.x5t_s256, "jkt": principal.jkt}).encode()]


validator = JWTAccessTokenValidator(
    issuer=os.environ["DPOP_TEST_ISSUER"], audience=os.environ["DPOP_TEST_AUDIENCE"], jwks=os.environ["DPOP_TEST_JWKS"]
)
application = DPoPWSGIMiddleware(
    _me, DPoPVerifier(validator, certificate_bound_tokens=True), allowed_hosts=["127.0.0.1"]
)
