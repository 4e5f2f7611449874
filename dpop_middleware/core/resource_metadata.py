"""OAuth 2.0 Protected Resource Metadata (RFC 9728): the document, where it lives, how it is answered.

Pure: :class:`ResourceMetadata` is what the operator configures, :func:`publish` turns it and the
verifier's own policy (algorithms, mode, route scopes) into a :class:`PublishedMetadata` once, at
start-up; adapters only route ``GET``/``HEAD`` of :attr:`PublishedMetadata.path` to
:meth:`PublishedMetadata.answer` and copy the result. The document is public, so it is served
without any DPoP check, and it is byte-for-byte the same for every request.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "COMPUTED_FIELDS",
    "WELL_KNOWN_PATH",
    "MetadataAnswer",
    "PublishedMetadata",
    "ResourceMetadata",
    "check_resource_url",
    "metadata_path",
    "metadata_url",
    "publish",
]

#: RFC 9728 §3: the well-known URI suffix of protected resource metadata.
WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource"

#: Fields the verifier's own configuration decides: user-supplied fields may not override them.
COMPUTED_FIELDS = frozenset(
    {
        "resource",
        "authorization_servers",
        "bearer_methods_supported",
        "dpop_signing_alg_values_supported",
        "dpop_bound_access_tokens_required",
        "tls_client_certificate_bound_access_tokens",
        "scopes_supported",
        "signed_metadata",
    }
)

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
Header = tuple[str, str]


def check_resource_url(value: object, what: str) -> str:
    """``value`` if it is an absolute ``https`` URL without query or fragment (RFC 9728 §1.2), else
    ``ValueError`` naming ``what``. Plain ``http`` is accepted only for loopback hosts (local runs, tests)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an absolute https URL, not {type(value).__name__}")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"{what} must be an absolute https URL, not {value!r}") from None
    if parts.scheme not in ("https", "http") or not host or parts.query or parts.fragment or "#" in value:
        raise ValueError(f"{what} must be an absolute https URL without query or fragment, not {value!r}")
    if parts.scheme == "http" and host not in _LOOPBACK:
        raise ValueError(f"{what} must use https (plain http only on a loopback host), not {value!r}")
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in value):
        raise ValueError(f"{what} must be a URL of printable ASCII characters, not {value!r}")
    return value


def metadata_path(resource: str) -> str:
    """The path of ``resource``'s metadata: the well-known suffix inserted between host and path
    (RFC 9728 §3.1; a terminating ``/`` of the path is removed first)."""
    return WELL_KNOWN_PATH + urlsplit(resource).path.rstrip("/")


def metadata_url(resource: str) -> str:
    """Where ``resource``'s metadata is published (RFC 9728 §3.1): ``https://host/.well-known/oauth-protected-resource/path``."""
    parts = urlsplit(resource)
    return urlunsplit((parts.scheme, parts.netloc, metadata_path(resource), "", ""))


def _json_value(name: str, value: object, depth: int = 0) -> object:
    """``value`` if it is plain JSON (str, number, bool, None, lists and string-keyed dicts of those)."""
    if depth > 8:
        raise ValueError(f"resource metadata field {name!r} is nested too deeply")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(name, item, depth + 1) for item in value]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: _json_value(name, item, depth + 1) for key, item in value.items()}
    raise ValueError(f"resource metadata field {name!r} must be plain JSON, not {type(value).__name__}")


@dataclass(frozen=True)
class ResourceMetadata:
    """What this API says about itself in its RFC 9728 document; the rest comes from the verifier.

    ``resource`` is this API's resource identifier (an ``https`` URL; the metadata is served at
    :func:`metadata_url` of it). ``authorization_servers`` are the issuers whose tokens it takes.
    ``scopes_supported`` (``None``: the scopes the route policy demands, if any). ``fields`` adds
    other members (``resource_name``, ``resource_documentation``, ``resource_policy_uri``...), never
    one the verifier decides. ``signing_key`` (a private :class:`~dpop_middleware.client.DPoPKey`)
    adds ``signed_metadata`` (§2.2), a JWT of the same members with ``iss`` = ``signing_issuer``
    (default: ``resource``) and ``kid`` = ``signing_kid`` when given.
    ``tls_client_certificate_bound_access_tokens`` says whether certificate-bound tokens (RFC 8705)
    are taken. ``cache_max_age``: the ``Cache-Control`` max-age of the answer, in seconds.
    """

    resource: str
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    signing_key: Any = None
    signing_kid: str | None = None
    signing_issuer: str | None = None
    tls_client_certificate_bound_access_tokens: bool = False
    cache_max_age: int = 3600

    def __post_init__(self) -> None:
        check_resource_url(self.resource, "resource")
        if isinstance(self.authorization_servers, str):
            raise TypeError("authorization_servers must be a list of issuer URLs, not one string")
        servers = tuple(self.authorization_servers)
        for server in servers:
            check_resource_url(server, "authorization_servers")
        object.__setattr__(self, "authorization_servers", servers)
        if self.scopes_supported is not None:
            if isinstance(self.scopes_supported, str) or not all(
                isinstance(s, str) and s and " " not in s for s in self.scopes_supported
            ):
                raise TypeError("scopes_supported must be a list of scope names")
            object.__setattr__(self, "scopes_supported", tuple(self.scopes_supported))
        if not isinstance(self.fields, Mapping):
            raise TypeError("fields must be a dict of extra metadata members")
        clashing = sorted(set(self.fields) & COMPUTED_FIELDS)
        if clashing:
            raise ValueError(f"resource metadata fields {clashing} are set from the verifier's configuration")
        checked = {str(name): _json_value(str(name), value) for name, value in self.fields.items()}
        object.__setattr__(self, "fields", MappingProxyType(checked))
        if self.signing_key is not None and not callable(getattr(self.signing_key, "sign", None)):
            raise TypeError("signing_key must be a private DPoPKey (an object with sign(header, claims))")
        if not isinstance(self.tls_client_certificate_bound_access_tokens, bool):
            raise TypeError("tls_client_certificate_bound_access_tokens must be a bool")
        if isinstance(self.cache_max_age, bool) or not isinstance(self.cache_max_age, int) or self.cache_max_age < 0:
            raise ValueError("cache_max_age must be a non-negative integer of seconds")

    @property
    def url(self) -> str:
        """Where the document is served (and what 401 challenges name in ``resource_metadata``)."""
        return metadata_url(self.resource)


@dataclass(frozen=True, slots=True)
class MetadataAnswer:
    """The response to one request for the document: status, headers, body."""

    status: int
    headers: tuple[Header, ...]
    body: bytes


@dataclass(frozen=True)
class PublishedMetadata:
    """The document as served: its path, URL, members and JSON bytes, built once by :func:`publish`."""

    path: str
    url: str
    document: Mapping[str, Any]
    body: bytes
    cache_max_age: int

    def answer(self, method: str) -> MetadataAnswer:
        """``GET``/``HEAD``: 200 with the document (``HEAD``: no body); any other method: 405 with ``Allow``."""
        headers: tuple[Header, ...]
        if method in ("GET", "HEAD"):
            headers = (
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(self.body))),
                ("Cache-Control", f"public, max-age={self.cache_max_age}"),
            )
            return MetadataAnswer(200, headers, self.body if method == "GET" else b"")
        body = b'{"error":"method_not_allowed","error_description":"Use GET"}'
        headers = (
            ("Allow", "GET, HEAD"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        )
        return MetadataAnswer(405, headers, body)

    def serves(self, path: str) -> bool:
        """Whether a request for ``path`` (the full path, mount prefix included) is for this document."""
        return path == self.path


def _route_scopes(path_scopes: Iterable[tuple[str, tuple[str, ...]]]) -> tuple[str, ...]:
    found: list[str] = []
    for _, scopes in path_scopes:
        found.extend(scope for scope in scopes if scope not in found)
    return tuple(found)


def publish(
    metadata: ResourceMetadata,
    *,
    algorithms: Iterable[str],
    dpop_required: bool,
    path_scopes: Iterable[tuple[str, tuple[str, ...]]] = (),
    now: float | None = None,
) -> PublishedMetadata:
    """The RFC 9728 §2 document of ``metadata`` under the verifier's policy.

    ``algorithms``: the proof algorithms accepted (``dpop_signing_alg_values_supported``);
    ``dpop_required``: no Bearer tokens (``dpop_bound_access_tokens_required``); ``path_scopes``: the
    route policy's rules, whose scopes make ``scopes_supported`` when the metadata names none.
    """
    document: dict[str, Any] = {"resource": metadata.resource}
    if metadata.authorization_servers:
        document["authorization_servers"] = list(metadata.authorization_servers)
    scopes = metadata.scopes_supported if metadata.scopes_supported is not None else _route_scopes(path_scopes)
    if scopes:
        document["scopes_supported"] = list(scopes)
    document["bearer_methods_supported"] = ["header"]  # never the body or the query (RFC 9449 §7.1)
    document["dpop_signing_alg_values_supported"] = list(algorithms)
    document["dpop_bound_access_tokens_required"] = dpop_required
    document["tls_client_certificate_bound_access_tokens"] = metadata.tls_client_certificate_bound_access_tokens
    document.update(metadata.fields)
    if metadata.signing_key is not None:
        claims = dict(document)
        claims["iss"] = metadata.signing_issuer or metadata.resource
        claims["iat"] = int(time.time() if now is None else now)
        header: dict[str, Any] = {"alg": metadata.signing_key.alg, "typ": "JWT"}
        if metadata.signing_kid:
            header["kid"] = metadata.signing_kid
        document["signed_metadata"] = metadata.signing_key.sign(header, claims)
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return PublishedMetadata(
        path=metadata_path(metadata.resource),
        url=metadata.url,
        document=MappingProxyType(document),
        body=body,
        cache_max_age=metadata.cache_max_age,
    )
