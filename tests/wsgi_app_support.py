"""Helpers shared by the Flask and plain-WSGI tests: response conversion and the bare WSGI test app."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from adapter_cases import Response, identity

from dpop_middleware.wsgi import principal_from_environ


def to_case_response(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> Response:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode("latin-1")
    return Response(status, out, parsed)


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A framework-free WSGI app: answers the identity (the path it saw goes in X-Path-Info)."""
    data = json.dumps(identity(principal_from_environ(environ))).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    headers.append(("X-Path-Info", environ.get("SCRIPT_NAME", "") + "|" + environ.get("PATH_INFO", "")))
    start_response("200 OK", headers)
    return [data]
