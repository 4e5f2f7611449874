"""``htu`` normalization and comparison (RFC 9449 §4.3 check 9, RFC 3986 §6.2.2 and §6.2.3).

Both sides, the URL the server rebuilt and the ``htu`` claim the client signed, go through the same
normalization and are then compared for equality. Never ``endswith``, never case-folded paths:

* scheme and host are lowercased; ``ws``/``wss`` count as ``http``/``https`` (RFC 6455 upgrades);
* the default port is dropped, an empty path becomes ``/``;
* percent-escapes are uppercased, escapes of unreserved characters decoded, other characters that
  may not appear raw in a path are percent-encoded (as UTF-8);
* dot segments are removed (RFC 3986 §5.2.4);
* query and fragment are dropped (RFC 9449 §4.2);
* anything else odd (userinfo, a bad port, control characters, a broken escape) is an error.
"""

from __future__ import annotations

import functools
import re

__all__ = ["PATH_SAFE", "HTUError", "htu_matches", "normalize_htu", "remove_dot_segments"]

#: What may stand unescaped in a path besides the unreserved characters (letters, digits, ``-._~``,
#: which ``urllib.parse.quote`` never escapes): RFC 3986 ``pchar`` minus ``%`` (escapes are handled
#: apart), plus ``/``. The one table for every path the package rebuilds or checks.
PATH_SAFE = "!$&'()*+,;=:@/"


class HTUError(ValueError):
    """The URL cannot be normalized (so it can never match)."""


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?", re.DOTALL)
_HOST = re.compile(r"[a-z0-9._~!$&'()*+,;=\-]+|\[[0-9a-f:.]+\]")
_SCHEMES = {"http": ("http", 80), "https": ("https", 443), "ws": ("http", 80), "wss": ("https", 443)}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = _UNRESERVED | frozenset(PATH_SAFE)
_HEX = frozenset("0123456789abcdefABCDEF")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for an absolute path."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    result = "/" + "/".join(output)
    # A trailing "." or ".." leaves a directory: keep the trailing slash as §5.2.4 does.
    if path.endswith(("/.", "/..")) and not result.endswith("/"):
        result += "/"
    return result


def _normalize_path(path: str) -> str:
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == "%":
            hexpair = path[i + 1 : i + 3]
            if len(hexpair) != 2 or not _HEX.issuperset(hexpair):
                raise HTUError("broken percent-escape")
            decoded = chr(int(hexpair, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + hexpair.upper())
            i += 3
            continue
        if ch in _PATH_SAFE:
            out.append(ch)
        elif ord(ch) <= 0x20 or ord(ch) == 0x7F:
            raise HTUError("control character or space in path")
        else:
            try:
                encoded = ch.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: valid JSON, not a character
                raise HTUError("unpaired surrogate in path") from None
            out.extend(f"%{byte:02X}" for byte in encoded)
        i += 1
    return remove_dot_segments("".join(out) or "/")


@functools.lru_cache(maxsize=4096)
def normalize_htu(url: str) -> str:
    """Return the normalized ``scheme://host[:port]/path`` form of an absolute http(s) URL.

    Raises :class:`HTUError` for anything that is not an absolute http(s)/ws(s) URL with a host.
    The result is cached: a server sees the same few URLs over and over.
    """
    match = _URL.fullmatch(url)
    if match is None:
        raise HTUError("not an absolute URL")
    scheme_raw, authority, path = match.groups()
    scheme_default = _SCHEMES.get(scheme_raw.lower())
    if scheme_default is None:
        raise HTUError("scheme is not http(s)")
    scheme, default_port = scheme_default
    if "@" in authority:
        raise HTUError("userinfo in URL")
    host, port_text = authority.lower(), ""
    if host.startswith("["):
        end = host.find("]")
        host, rest = host[: end + 1], host[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise HTUError("bad authority")
            port_text = rest[1:]
    elif ":" in host:
        host, port_text = host.rsplit(":", 1)
    if _HOST.fullmatch(host) is None:
        raise HTUError("bad host")
    port = ""
    if port_text:
        if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5 or int(port_text) > 65535:
            raise HTUError("bad port")
        if int(port_text) != default_port:
            port = f":{int(port_text)}"
    return f"{scheme}://{host}{port}{_normalize_path(path)}"


def htu_matches(request_url: str, htu: str) -> bool:
    """True when the proof's ``htu`` names the same resource as the request URL."""
    try:
        return normalize_htu(htu) == normalize_htu(request_url)
    except HTUError:
        return False
