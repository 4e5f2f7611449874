"""The Redis URLs a replay store accepts, and the redis-py clients they name.

``redis://``, ``rediss://`` (TLS) and ``unix://`` are redis-py's own forms (credentials, database
and options as ``redis.Redis.from_url`` reads them). Two more name the ways Redis runs at scale:

- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``: the sentinels
  to ask, and the name of the master they watch (the password is the master's);
- ``redis+cluster://[user:password@]host:port[,host:port...]``: some nodes of a Redis Cluster,
  from which the client learns the rest.

Errors never echo the URL: it may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["CLUSTER_FORM", "SENTINEL_FORM", "URL_SCHEMES", "RedisURL", "RedisURLError", "parse_redis_url"]

SENTINEL_FORM = "redis+sentinel://[user:password@]host:port[,host:port]/service_name[/db]"
CLUSTER_FORM = "redis+cluster://[user:password@]host:port[,host:port]"
#: Every scheme a replay store URL may have.
URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


class RedisURLError(ValueError):
    """A malformed replay store URL; the message names the expected form, never the URL."""


@dataclass(frozen=True)
class RedisURL:
    """A parsed URL: ``kind`` is ``"direct"`` (redis-py's forms), ``"sentinel"`` or ``"cluster"``."""

    kind: str
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def _nodes(netloc: str, form: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in netloc.split(","):
        host, colon, port_text = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RedisURLError(f"each node must be host:port; expected {form}")
        nodes.append((host, int(port_text)))
    return tuple(nodes)


def parse_redis_url(url: str) -> RedisURL:
    """Parse ``url``; :class:`RedisURLError` (naming the expected form, not the URL) if it is malformed."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in URL_SCHEMES:
        raise RedisURLError(f"the scheme must be one of {', '.join(s + '://' for s in URL_SCHEMES)}")
    if scheme in ("redis", "rediss", "unix"):
        return RedisURL("direct", url)
    form = SENTINEL_FORM if scheme == "redis+sentinel" else CLUSTER_FORM
    parts = urlsplit("x://" + rest)
    if parts.query or parts.fragment:
        raise RedisURLError(f"takes no query options (pass a client instance for those); expected {form}")
    credentials, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user_text, colon, password_text = credentials.partition(":")
        username, password = (unquote(user_text) or None), (unquote(password_text) if colon else None)
    nodes = _nodes(hosts, form)
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if scheme == "redis+cluster":
        if any(path):
            raise RedisURLError(f"takes no path (a cluster has database 0 only); expected {form}")
        return RedisURL("cluster", url, nodes, username=username, password=password)
    if not path or not path[0] or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisURLError(f"needs the master's service name, then optionally a database number; expected {form}")
    db = int(path[1]) if len(path) == 2 else 0
    return RedisURL("sentinel", url, nodes, service=path[0], db=db, username=username, password=password)
