"""OAuth response and request helpers shared by the issuer's endpoints (RFC 6749 §5.1, §5.2, §3.2)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dpop_middleware.core.challenge import ErrorResponse

__all__ = ["NO_STORE", "oauth_error", "read_form", "send_rejection"]

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 8192
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: token responses


def oauth_error(status: int, error: str, description: str, headers: Mapping[str, str] | None = None) -> Response:
    """An RFC 6749 §5.2 error response (never cached)."""
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers={**NO_STORE, **(headers or {})}
    )


def send_rejection(rejection: ErrorResponse) -> Response:
    """The DPoP check's rejection, sent verbatim (status, ``DPoP-Nonce``, JSON body)."""
    headers = dict(rejection.headers)
    return Response(rejection.body, rejection.status, headers=headers, media_type=rejection.content_type)


async def read_form(request: Request) -> dict[str, str] | None:
    """The token request's parameters (RFC 6749 §3.2: form-encoded POST body, each at most once)."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != FORM:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    form = dict(pairs)
    if len(form) != len(pairs):  # a repeated parameter is ambiguous: refuse it
        return None
    return form
