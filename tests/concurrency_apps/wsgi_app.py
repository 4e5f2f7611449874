"""A bare WSGI app calling ``DPoPVerifier.authenticate`` (run it under gunicorn sync workers)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from dpop_middleware import RequestInfo
from dpop_middleware.core.origin import rebuild_url

from .config import PROXIES, build_verifier

verifier = build_verifier(asynchronous=False)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}


def _request(environ: dict[str, Any]) -> RequestInfo:
    headers = [(k[5:].replace("_", "-").lower(), v) for k, v in environ.items() if k.startswith("HTTP_")]
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name, []).append(value)
    url = rebuild_url(
        scheme=environ["wsgi.url_scheme"],
        host=environ.get("HTTP_HOST", ""),
        root_path=environ.get("SCRIPT_NAME", ""),
        path=environ.get("PATH_INFO", "/"),
        peer=environ.get("REMOTE_ADDR"),
        headers=by_name,
        settings=PROXIES,
    )
    return RequestInfo(environ["REQUEST_METHOD"], url, headers)


def _send(start_response: StartResponse, status: int, headers: list[tuple[str, str]], body: bytes) -> Iterable[bytes]:
    headers = [*headers, ("Content-Type", "application/json"), ("X-Worker-Pid", str(os.getpid()))]
    start_response(f"{status} {_REASONS.get(status, 'Status')}", headers)
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        return _send(start_response, 200, [], b'{"ok": true}')
    if path != "/protected":
        return _send(start_response, 404, [], b"{}")
    result = verifier.authenticate(_request(environ))
    if result.rejection is not None:
        rejection = result.rejection
        return _send(start_response, rejection.status, list(rejection.headers), rejection.body)
    principal = result.principal
    body = json.dumps({"sub": principal.subject if principal else None, "pid": os.getpid()}).encode()
    return _send(start_response, 200, list(result.response_headers), body)
