"""Credentials out of text: the one rule for what a log line, repr or trace must not carry.

An access token, a DPoP proof or any other credential is replaced by ``[REDACTED]`` wherever it
shows up: as a JWT-shaped string (three base64url segments), after an ``Authorization`` (or
``Proxy-Authorization``) header name, as an ``access_token=`` (``refresh_token``,
``client_secret``) parameter, or after a ``DPoP``/``Bearer`` scheme (a ``DPoP`` header's
value is a JWT). The header names whose values reprs hide are listed once here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["CREDENTIAL_HEADERS", "REDACTED", "redact_headers", "redact_text"]

REDACTED = "[REDACTED]"
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "dpop", "cookie", "set-cookie"})

# A compact JWS/JWE: base64url segments joined by dots, the first long enough to be a JSON header.
_JWT = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}")
# `Authorization: X`, `'authorization': 'X'`, `(b'authorization', b'X')`, `authorization=X`.
_HEADER = re.compile(
    r"""(?i)\b((?:proxy-)?authorization)(["']?\s*[:=,]\s*(?:(?-i:b)?["'])?)"""
    r"""((?:(?:DPoP|Bearer|Basic|Digest)\s+)?)([^\s"',;)\]}]+)"""
)
# A token in a URL or form (RFC 6750 §2.3 `access_token=`), as request lines and debug logs show it.
_PARAM = re.compile(r"(?i)\b(access_token|refresh_token|client_secret)=([^&\s\"'#]+)")
# `DPoP <token68>` / `Bearer <token68>` anywhere: an opaque token after its scheme.
_SCHEME = re.compile(r"\b(DPoP|Bearer)\s+([A-Za-z0-9._~+/-]{16,}=*)")


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``[REDACTED]``."""
    if not text:
        return text
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{REDACTED}", text)
    text = _PARAM.sub(lambda m: f"{m[1]}={REDACTED}", text)
    text = _SCHEME.sub(lambda m: f"{m[1]} {REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header pairs with the values of credential headers replaced (for reprs and diagnostics)."""
    return [(name, REDACTED if name.lower() in CREDENTIAL_HEADERS else value) for name, value in headers]
