"""Client-side discovery from nothing but a resource URL: RFC 9728 §5 then RFC 8414.

One request without credentials to the resource; its 401 names the metadata in
``WWW-Authenticate: ... resource_metadata="<url>"`` (else the well-known URL of the resource is
used, RFC 9728 §3.1). The metadata must name exactly this resource (§3.3) and at least one
authorization server; the first one's RFC 8414 metadata (or OpenID discovery) must name that issuer.
Everything else fails closed with a :class:`DiscoveryError`: a metadata document for another
resource, members of the wrong JSON type, plain ``http`` off loopback, bodies over the size cap.

The steps are one sans-IO flow (:func:`discovery_flow`); :func:`dpop_middleware.httpx_auth.discover`,
:func:`~dpop_middleware.httpx_auth.adiscover` and :func:`dpop_middleware.requests_auth.discover`
drive it with their HTTP client. This is how an MCP client finds its authorization server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .core.errors import TokenValidationUnavailable
from .core.htu import HTUError, normalize_htu
from .core.resource_metadata import metadata_url
from .tokens._discovery import well_known_urls
from .tokens._http import Flow, HTTPRequest, HTTPResponse, HTTPSettings, check_endpoint_url, is_loopback

__all__ = [
    "Discovery",
    "DiscoveryError",
    "challenge_metadata_url",
    "discovery_failure",
    "discovery_flow",
    "discovery_http",
]

#: Largest metadata document read (a real one is a few hundred bytes).
MAX_DOCUMENT_BYTES = 64 * 1024
_ACCEPT_JSON = (("Accept", "application/json"),)
_PARAM = re.compile(r'(?:^|[\s,])resource_metadata\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)', re.IGNORECASE)


class DiscoveryError(Exception):
    """Discovery failed; ``reason`` is a stable code (``resource_mismatch``, ``not_json``...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Discovery:
    """What discovery found: the resource's metadata and its (first) authorization server's."""

    resource: str
    resource_metadata_url: str
    resource_metadata: Mapping[str, Any]
    issuer: str
    authorization_server_metadata: Mapping[str, Any]

    @property
    def token_endpoint(self) -> str | None:
        """The authorization server's ``token_endpoint`` (checked: https, or http on loopback)."""
        value = self.authorization_server_metadata.get("token_endpoint")
        return value if isinstance(value, str) else None

    @property
    def dpop_algorithms(self) -> tuple[str, ...]:
        """The proof algorithms the resource accepts (``dpop_signing_alg_values_supported``)."""
        return tuple(self.resource_metadata.get("dpop_signing_alg_values_supported", ()))


def discovery_http(timeout: float) -> HTTPSettings:
    """The bounds of every discovery request, whichever HTTP library sends it: ``timeout`` for each
    network operation and for the whole exchange, at most :data:`MAX_DOCUMENT_BYTES` of body."""
    return HTTPSettings(timeout=timeout, max_body_bytes=MAX_DOCUMENT_BYTES, user_agent="dpop-middleware discovery")


def discovery_failure(exc: TokenValidationUnavailable) -> DiscoveryError:
    """A transport failure of a discovery request (too large, too slow, unreachable) as the
    client's :class:`DiscoveryError`."""
    if exc.reason.endswith("too_large"):
        return DiscoveryError("metadata_too_large", "a discovery response was larger than the cap")
    return DiscoveryError("unreachable", f"a discovery request failed ({exc.reason})")


def challenge_metadata_url(www_authenticate: Iterable[str]) -> str | None:
    """The ``resource_metadata`` URL of the challenges (RFC 9728 §5.1), ``None`` if none names one.

    Several challenges naming different URLs are ambiguous: :class:`DiscoveryError`.
    """
    found: set[str] = set()
    for line in www_authenticate:
        for match in _PARAM.finditer(line):
            value = match.group(1)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            found.add(value)
    if len(found) > 1:
        raise DiscoveryError("ambiguous_challenge", "the challenges name different resource_metadata URLs")
    return found.pop() if found else None


def _secure(url: object, what: str, allow_insecure_http: bool, *, resource: str | None = None) -> str:
    """``url`` if discovery may fetch it. A URL named by a document (``resource`` given: the resource
    discovery started from) must not lead somewhere the resource could not: plain ``http`` only
    after a plain-``http`` resource, and a loopback host only after a loopback resource, so a remote
    API cannot turn the client against services on its own machine."""
    if not isinstance(url, str):
        raise DiscoveryError("bad_metadata", f"{what} must be a URL string")
    try:
        checked = check_endpoint_url(url, allow_insecure_http=allow_insecure_http)
    except ValueError as exc:
        raise DiscoveryError("insecure_url", f"{what}: {exc}") from None
    if resource is not None and not allow_insecure_http:
        start, target = urlsplit(resource), urlsplit(checked)
        if target.scheme == "http" and start.scheme != "http":
            raise DiscoveryError("insecure_url", f"{what}: plain http named by an https resource")
        if is_loopback(target.hostname or "") and not is_loopback(start.hostname or ""):
            raise DiscoveryError("insecure_url", f"{what}: a loopback host named by a remote resource")
    return checked


def _document(response: HTTPResponse, what: str) -> dict[str, Any]:
    if response.status != 200:
        raise DiscoveryError("metadata_unavailable", f"{what} answered {response.status}")
    if len(response.body) > MAX_DOCUMENT_BYTES:
        raise DiscoveryError("metadata_too_large", f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        value = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DiscoveryError("not_json", f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise DiscoveryError("not_json", f"{what} is not a JSON object")
    return value


def _same_resource(a: str, b: str) -> bool:
    try:
        return normalize_htu(a) == normalize_htu(b)
    except HTUError:
        return False


def _strings(document: Mapping[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = document.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise DiscoveryError("bad_metadata", f"{name} must be a non-empty array of strings")
    return value


def _trusted(issuers: Iterable[str]) -> frozenset[str]:
    if isinstance(issuers, str) or not all(isinstance(issuer, str) for issuer in issuers):
        raise TypeError("trusted_issuers must be a list of issuer identifiers, not a string")
    return frozenset(issuers)


def _check_resource_metadata(document: Mapping[str, Any], resource: str) -> None:
    """RFC 9728 §2 types and §3.3: the document is about ``resource``, or it is not used at all."""
    named = document.get("resource")
    if not isinstance(named, str):
        raise DiscoveryError("bad_metadata", "resource must be a string")
    if not _same_resource(named, resource):
        raise DiscoveryError("resource_mismatch", f"the metadata is for {named[:200]!r}, not {resource!r}")
    for name in ("scopes_supported", "bearer_methods_supported", "dpop_signing_alg_values_supported"):
        _strings(document, name)
    for name in ("dpop_bound_access_tokens_required", "tls_client_certificate_bound_access_tokens"):
        if name in document and not isinstance(document[name], bool):
            raise DiscoveryError("bad_metadata", f"{name} must be a boolean")


def discovery_flow(
    resource: str, *, allow_insecure_http: bool = False, trusted_issuers: Iterable[str] | None = None
) -> Flow[Discovery]:
    """The steps of discovery from ``resource`` (an https URL; http only on loopback or when allowed).

    ``trusted_issuers``: the authorization servers this client may use. The resource's metadata
    chooses among them (the first it lists that is trusted); one it names outside them is refused
    (``untrusted_issuer``), since a client that sends its credentials wherever a resource points can
    be mixed up by a hostile resource. ``None`` lets the resource choose (RFC 9728 §7.3: then
    :attr:`Discovery.issuer` is only as trustworthy as the resource).
    """
    trusted = None if trusted_issuers is None else _trusted(trusted_issuers)
    resource = _secure(resource, "the resource URL", allow_insecure_http)
    probe = yield HTTPRequest("GET", resource, _ACCEPT_JSON)
    named = challenge_metadata_url([probe.headers.get("www-authenticate", "")]) if probe.status == 401 else None
    where = _secure(named or metadata_url(resource), "resource_metadata", allow_insecure_http, resource=resource)
    document = _document((yield HTTPRequest("GET", where, _ACCEPT_JSON)), "the resource metadata")
    _check_resource_metadata(document, resource)
    servers = _strings(document, "authorization_servers", required=True)
    if trusted is not None:
        servers = [server for server in servers if server in trusted]
        if not servers:
            raise DiscoveryError("untrusted_issuer", "the resource names no authorization server this client trusts")
    issuer = _secure(servers[0], "the issuer", allow_insecure_http, resource=resource)
    for url in well_known_urls(issuer):
        try:
            server = _document((yield HTTPRequest("GET", url, _ACCEPT_JSON)), "the authorization server metadata")
        except DiscoveryError as exc:
            if exc.reason == "metadata_unavailable":
                continue  # RFC 8414 first, then OpenID discovery
            raise
        if server.get("issuer") != issuer:  # RFC 8414 §3.3: never use another issuer's metadata
            raise DiscoveryError("issuer_mismatch", f"the authorization server metadata is not for {issuer!r}")
        if "token_endpoint" in server:
            _secure(server["token_endpoint"], "token_endpoint", allow_insecure_http, resource=resource)
        return Discovery(resource, where, MappingProxyType(document), issuer, MappingProxyType(server))
    raise DiscoveryError("metadata_unavailable", f"no RFC 8414 or OpenID metadata found for {issuer!r}")
