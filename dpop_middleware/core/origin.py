"""Rebuilding the URL the *client* used, behind reverse proxies too (design.md §3), pure.

Adapters pass what their framework knows (scheme, Host, mount prefix, path, the immediate peer's
address, the forwarding headers); this module decides which of those to believe:

1. A configured ``public_url`` wins outright: ``public_url`` + path below the mount point.
2. Otherwise forwarding headers count **only** when the immediate peer is a trusted proxy, and
   only those configured as trusted (default: ``X-Forwarded-For`` and ``-Proto``, as werkzeug's
   ProxyFix does). ``Forwarded`` (RFC 7239), when trusted, is preferred over
   ``X-Forwarded-*``. Multi-hop chains are walked from
   the right, skipping hops whose address is itself a trusted proxy; the first untrusted hop's
   proxy is the edge, and its view of ``proto``/``host`` is used (rightmost-untrusted).
3. Otherwise the request's own scheme and Host header are used.
4. Whichever host results must be one of ``allowed_hosts`` when they are configured (the
   semantics of Django's ``ALLOWED_HOSTS``): otherwise a proof captured at one resource server
   could be replayed at another that shares its audience, by sending that server's Host.

Anything malformed in a forwarding header is ignored, never trusted half-way.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .client_cert import CLIENT_CERT_FORMATS
from .fields import list_elements
from .htu import PATH_SAFE

__all__ = [
    "DEFAULT_TRUSTED_HEADERS",
    "FORWARDING_HEADERS",
    "ProxySettings",
    "rebuild_url",
]

#: The request headers :func:`rebuild_url` may read (lower-case), when the peer is trusted.
FORWARDING_HEADERS = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
)
#: What is believed from a trusted proxy unless configured otherwise: like werkzeug's ProxyFix,
#: only the client address and scheme. Believe a header only if *your* proxy sets (overwrites) it:
#: one it merely passes through is the client's to choose.
DEFAULT_TRUSTED_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto"})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

logger = logging.getLogger("dpop_middleware")

_HOST = re.compile(r"(?:[A-Za-z0-9._~\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_PREFIX = re.compile(f"/[A-Za-z0-9._~%{re.escape(PATH_SAFE)}\\-]*")
_FORWARDED_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


@dataclass(frozen=True)
class ProxySettings:
    """How to learn the public URL. Build with :meth:`create` from user configuration."""

    trusted_proxies: tuple[IPNetwork, ...] = ()
    public_url: str | None = None
    trusted_headers: frozenset[str] = DEFAULT_TRUSTED_HEADERS
    #: Lower-case host patterns (Django's ``ALLOWED_HOSTS`` syntax); ``None``: any Host is believed.
    allowed_hosts: tuple[str, ...] | None = None
    #: Lower-case name of the header in which a trusted proxy passes the client certificate
    #: (:mod:`.client_cert`), and its encoding; ``None``: no such header is read.
    client_cert_header: str | None = None
    client_cert_format: str = "rfc9440"

    @classmethod
    def create(
        cls,
        trusted_proxies: Iterable[str] | str | None = None,
        public_url: str | None = None,
        trusted_headers: Iterable[str] | str | None = None,
        allowed_hosts: Iterable[str] | str | None = None,
        *,
        client_cert_header: str | None = None,
        client_cert_format: str | None = None,
    ) -> ProxySettings:
        """``trusted_proxies``: addresses or CIDR blocks (``"10.0.0.0/8"``, ``"127.0.0.1"``).

        ``trusted_headers``: which forwarding headers to believe from them, among
        :data:`FORWARDING_HEADERS` (default :data:`DEFAULT_TRUSTED_HEADERS`: ``X-Forwarded-For``
        and ``X-Forwarded-Proto``); add ``x-forwarded-host``/``-port``/``-prefix`` or
        ``forwarded`` only when your proxy sets them on every request.

        ``allowed_hosts``: the hosts this API answers for, as Django's ``ALLOWED_HOSTS``:
        ``"api.example.com"``, ``".example.com"`` (the domain and its subdomains), ``"*"`` (any),
        or ``"host:port"`` to pin the port too. Matched against the host the URL is rebuilt with.

        ``client_cert_header``: the header in which a trusted proxy passes the client certificate
        (RFC 9440 ``Client-Cert``), believed only from ``trusted_proxies``; ``client_cert_format``:
        ``"rfc9440"`` (default) or ``"nginx"`` (``$ssl_client_escaped_cert``, URL-escaped PEM).
        """
        cert_format = (client_cert_format or "rfc9440").strip().lower()
        if cert_format not in CLIENT_CERT_FORMATS:
            choices = list(CLIENT_CERT_FORMATS)
            raise ValueError(f"client_cert_format must be one of {choices}, not {client_cert_format!r}")
        cert_header = client_cert_header.strip().lower() if client_cert_header is not None else None
        if cert_header is not None and (not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", cert_header)):
            raise ValueError(f"client_cert_header must be a header name, not {client_cert_header!r}")
        if cert_header in ("authorization", "dpop", "host", *FORWARDING_HEADERS):
            raise ValueError(f"client_cert_header cannot be {client_cert_header!r}, a header read for another purpose")
        if isinstance(trusted_headers, str):
            trusted_headers = trusted_headers.replace(",", " ").split()
        headers = DEFAULT_TRUSTED_HEADERS if trusted_headers is None else frozenset(h.lower() for h in trusted_headers)
        unknown = headers - set(FORWARDING_HEADERS)
        if unknown:
            raise ValueError(f"unknown forwarding headers {sorted(unknown)}; choose from {list(FORWARDING_HEADERS)}")
        if isinstance(trusted_proxies, str):
            trusted_proxies = trusted_proxies.replace(",", " ").split()
        networks = tuple(ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies or ())
        if public_url is not None:
            public_url = public_url.rstrip("/")
            if not public_url.startswith(("http://", "https://")):
                raise ValueError("public_url must be an absolute http(s) URL")
        if cert_header is not None and not networks:
            raise ValueError(
                "client_cert_header is believed only from trusted_proxies, which is empty: set trusted_proxies "
                "to the proxy that terminates mutual TLS"
            )
        return cls(networks, public_url, headers, _host_patterns(allowed_hosts), cert_header, cert_format)

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` (``name`` or ``name:port``) matches ``allowed_hosts`` (always, when unset)."""
        patterns = self.allowed_hosts
        if patterns is None:
            return True
        host = host.lower()
        name = host.rsplit(":", 1)[0] if host.rfind(":") > host.rfind("]") else host
        name = name.removesuffix(".")  # "example.com." is the same name, as Django treats it
        for pattern in patterns:
            if pattern in ("*", host):
                return True
            if pattern.startswith("."):
                if name == pattern[1:] or name.endswith(pattern):
                    return True
            elif pattern == name:
                return True
        return False

    def warn_if_host_unchecked(self, *, debug: bool, names: str) -> bool:
        """Log one WARNING when the URL comes from a Host header that nothing checks.

        Call once at start-up. ``names`` is how the user spells the two settings that fix it (e.g.
        ``"DPOP_PUBLIC_URL or DPOP_ALLOWED_HOSTS"``). Returns whether it warned.
        """
        if debug or self.public_url is not None or self.allowed_hosts is not None:
            return False
        logger.warning(
            "dpop: the Host header decides the URL that proofs are checked against, and no host is pinned: "
            "set %s, so a proof made for another server that accepts the same tokens is refused here",
            names,
        )
        return True

    @property
    def reads_forwarding_headers(self) -> bool:
        """Whether :func:`rebuild_url` may ever read a forwarding header under these settings.

        Only a trusted proxy's are read, and none when ``public_url`` fixes the URL: adapters skip
        collecting them otherwise, on every request.
        """
        return bool(self.trusted_proxies) and self.public_url is None

    def is_trusted(self, address: str | None) -> bool:
        if not address or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)


@dataclass(frozen=True, slots=True)
class _Hop:
    for_: str | None
    proto: str | None
    host: str | None
    port: str | None = None
    prefix: str | None = None


def _host_patterns(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    patterns = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"allowed_hosts entries must be non-empty strings, not {item!r}")
        patterns.append(item.strip().lower())
    return tuple(patterns)


def _node_address(node: str | None) -> str | None:
    """The IP of a Forwarded ``for`` node (``"[2001:db8::1]:4711"``, ``192.0.2.1:80``), if any."""
    if not node:
        return None
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else None
    return node.rsplit(":", 1)[0] if node.count(":") == 1 else node


def _parse_forwarded(values: Sequence[str]) -> list[_Hop] | None:
    hops: list[_Hop] = []
    for element in ",".join(values).split(","):
        params: dict[str, str] = {}
        for pair in element.split(";"):
            if not pair.strip():
                continue
            match = _FORWARDED_PAIR.fullmatch(pair)
            if match is None:
                return None  # malformed: ignore the whole header
            name, value = match.group(1).lower(), match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[name] = value
        hops.append(_Hop(_node_address(params.get("for")), params.get("proto"), params.get("host")))
    return hops


def _at(values: list[str], hop_from_right: int) -> str | None:
    if not values:
        return None
    return values[-(hop_from_right + 1)] if hop_from_right < len(values) else values[0]


def _x_forwarded(headers: Mapping[str, Sequence[str]]) -> list[_Hop] | None:
    names = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix")
    if not any(headers.get(n) for n in names):
        return None
    fors = list_elements(headers.get("x-forwarded-for", ()))
    lists = [list_elements(headers.get(n, ())) for n in names[1:]]
    count = max(len(fors), 1)
    hops = []
    for index in range(count):
        k = count - 1 - index  # hops from the right
        hops.append(_Hop(fors[index] if index < len(fors) else None, *(_at(values, k) for values in lists)))
    return hops


def _edge_hop(hops: list[_Hop], settings: ProxySettings) -> _Hop:
    for hop in reversed(hops):
        if not settings.is_trusted(hop.for_):
            return hop
    return hops[0]


def rebuild_url(
    *,
    scheme: str,
    host: str,
    root_path: str,
    path: str,
    peer: str | None,
    headers: Mapping[str, Sequence[str]],
    settings: ProxySettings,
) -> str:
    """The absolute URL (without query) that the client used for this request.

    ``host`` is the request's Host header (with port if any), ``root_path`` the mount prefix
    (``SCRIPT_NAME`` / ASGI ``root_path``), ``path`` the path below it, percent-encoded as sent
    when the framework allows. ``headers`` maps lower-case names to their values.
    """
    if settings.public_url is not None:
        return settings.public_url + path
    if _HOST.fullmatch(host) is None:
        # A Host like "evil/api/x?" would move the path the proof is checked against. An empty
        # host makes the URL unusable, which the verifier answers with 400 invalid_request.
        host = ""
    if settings.is_trusted(peer):
        believed = {name: values for name, values in headers.items() if name in settings.trusted_headers}
        forwarded = believed.get("forwarded")
        hops = _parse_forwarded(forwarded) if forwarded else _x_forwarded(believed)
        if hops:
            edge = _edge_hop(hops, settings)
            if edge.proto and edge.proto.lower() in ("http", "https"):
                scheme = edge.proto.lower()
            if edge.host and _HOST.fullmatch(edge.host):
                host = edge.host
            if edge.port and edge.port.isdigit() and edge.port.isascii():
                host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                host = f"{host}:{edge.port}"
            if edge.prefix and _PREFIX.fullmatch(edge.prefix):
                root_path = edge.prefix.rstrip("/") + root_path
    if host and not settings.host_allowed(host):
        host = ""  # the verifier answers 400 invalid_request, as for a malformed Host
    return f"{scheme}://{host}{root_path}{path}"
