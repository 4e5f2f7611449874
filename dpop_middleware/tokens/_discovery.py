"""Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0), as a sans-IO flow."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..core.errors import TokenValidationUnavailable
from ._http import Flow, HTTPRequest, HTTPResponse, check_endpoint_url

__all__ = ["discover_endpoint", "json_object", "well_known_urls"]

_ACCEPT_JSON = (("Accept", "application/json"),)


def well_known_urls(issuer: str) -> tuple[str, str]:
    """Where an issuer publishes its metadata, in the order we try them.

    RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server`` between the host and the
    issuer's path; OpenID Connect Discovery §4 appends ``/.well-known/openid-configuration`` to it.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oauth = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", ""))
    openid = urlunsplit((parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", ""))
    return oauth, openid


def json_object(response: HTTPResponse, reason: str) -> dict[str, Any]:
    """The body of a 200 response as a JSON object, or a 503 named ``reason``."""
    if response.status != 200:
        raise TokenValidationUnavailable(reason, diagnostics={"status": response.status})
    try:
        value = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        raise TokenValidationUnavailable(reason, diagnostics={"error": "not JSON"}) from None
    if not isinstance(value, dict):
        raise TokenValidationUnavailable(reason, diagnostics={"error": "not a JSON object"})
    return value


def _endpoint_from(metadata: Mapping[str, Any], issuer: str, name: str, allow_insecure_http: bool) -> str | None:
    # RFC 8414 §3.3: metadata naming another issuer must not be used (it may be an impersonation).
    if metadata.get("issuer") != issuer:
        return None
    endpoint = metadata.get(name)
    if not isinstance(endpoint, str):
        return None
    try:
        return check_endpoint_url(endpoint, allow_insecure_http=allow_insecure_http)
    except ValueError:
        return None


def discover_endpoint(issuer: str, name: str, *, allow_insecure_http: bool) -> Flow[str]:
    """Find the metadata field ``name`` (``jwks_uri``, ``introspection_endpoint``) of ``issuer``.

    Tries the RFC 8414 location, then the OpenID one. A document that is missing, malformed, for
    another issuer or without the field makes us try the next; when none helps, the answer is a 503
    (the configuration or the server is broken, not the client's token).
    """
    for url in well_known_urls(issuer):
        response = yield HTTPRequest("GET", url, _ACCEPT_JSON)
        try:
            metadata = json_object(response, "discovery_failed")
        except TokenValidationUnavailable:
            continue
        endpoint = _endpoint_from(metadata, issuer, name, allow_insecure_http)
        if endpoint is not None:
            return endpoint
    raise TokenValidationUnavailable("discovery_failed", diagnostics={"issuer": issuer, "field": name})
