"""Rendering of errors as HTTP responses: the one place that writes ``WWW-Authenticate``.

Adapters never format a challenge themselves; they copy ``ErrorResponse`` onto their framework's
response object. Values are always written as RFC 9110 quoted-strings with escaping, so a value can
never break out of its parameter (no f-string challenges).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import (
    DPoPError,
    InsufficientScopeError,
    InsufficientUserAuthenticationError,
    ServiceUnavailableError,
    UseDPoPNonceError,
)
from .nonce import nonce_headers

__all__ = ["ErrorResponse", "quote_param", "render_error"]

Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Status, headers and JSON body of a rejection, ready to be copied onto a framework response."""

    status: int
    headers: tuple[Header, ...]
    body: bytes
    error: DPoPError

    @property
    def content_type(self) -> str:
        return "application/json"


def quote_param(value: str) -> str:
    """Return ``value`` as an RFC 9110 quoted-string.

    Backslash and double quote are escaped; characters that a quoted-string cannot carry (controls,
    non-ASCII) are replaced by ``?`` because a challenge must stay a single, valid header line.
    """
    out = []
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code == 0x09 or 0x20 <= code <= 0x7E:
            out.append(ch)
        else:
            out.append("?")
    return '"' + "".join(out) + '"'


def _jsonable(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


def _challenge(scheme: str, params: list[tuple[str, str]]) -> str:
    if not params:
        return scheme
    return scheme + " " + ", ".join(f"{name}={quote_param(value)}" for name, value in params)


def _debug_details(error: DPoPError) -> str:
    """The diagnostics as one readable sentence, e.g. ``expected='https://a/x' received='http://a/x'``."""
    return " ".join(f"{name}={value!r}" for name, value in error.diagnostics.items())


def render_error(
    error: DPoPError,
    algs: tuple[str, ...],
    bearer_allowed: bool,
    *,
    debug: bool = False,
    resource_metadata: str | None = None,
) -> ErrorResponse:
    """Render ``error`` as the RFC 9449 / RFC 6750 response.

    * 401/400/403 carry a ``DPoP`` challenge with ``algs`` (and a ``Bearer`` challenge too when
      Bearer tokens are accepted); the error code goes on the challenge of the scheme the client used.
    * ``use_dpop_nonce`` carries exactly one ``DPoP-Nonce`` header.
    * 503 carries ``Retry-After`` and no challenge: the client did nothing wrong.
    * Every error response is ``Cache-Control: no-store``.
    * ``resource_metadata``: the URL of this API's RFC 9728 metadata, named on every challenge (§5.1)
      so that a client can find the authorization server from nothing but the 401.
    * ``debug``: the JSON body also says what was expected and received (``dpop_debug`` and a longer
      ``error_description``); the challenge header stays as in production.
    """
    headers: list[Header] = []
    if isinstance(error, ServiceUnavailableError):
        headers.append(("Retry-After", str(error.retry_after)))
    else:
        error_params: list[tuple[str, str]] = []
        if error.error is not None:
            error_params.append(("error", error.error))
            error_params.append(("error_description", error.description))
        if isinstance(error, InsufficientScopeError):
            error_params.append(("scope", " ".join(error.scopes)))
        if isinstance(error, InsufficientUserAuthenticationError):  # RFC 9470 §3
            if error.acr_values:
                error_params.append(("acr_values", " ".join(error.acr_values)))
            if error.max_age is not None:
                error_params.append(("max_age", str(error.max_age)))
        on_bearer = bearer_allowed and error.scheme == "Bearer"
        metadata_params = [("resource_metadata", resource_metadata)] if resource_metadata else []
        dpop_params = ([] if on_bearer else error_params) + [("algs", " ".join(algs))] + metadata_params
        headers.append(("WWW-Authenticate", _challenge("DPoP", dpop_params)))
        if bearer_allowed:
            bearer_params = (error_params if on_bearer else []) + metadata_params
            headers.append(("WWW-Authenticate", _challenge("Bearer", bearer_params)))
        if isinstance(error, UseDPoPNonceError):
            headers.extend(nonce_headers(error.nonce))
    headers.append(("Cache-Control", "no-store"))
    body: dict[str, object] = {"error": error.error or error.reason, "error_description": error.description}
    if debug:
        body["dpop_reason"] = error.reason
        if error.diagnostics:
            body["error_description"] = f"{error.description} ({_debug_details(error)})"
            body["dpop_debug"] = {name: _jsonable(value) for name, value in error.diagnostics.items()}
    return ErrorResponse(
        status=error.status,
        headers=tuple(headers),
        body=json.dumps(body, separators=(",", ":")).encode(),
        error=error,
    )
