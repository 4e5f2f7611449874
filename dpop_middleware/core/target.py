"""The path of the URL the client used: mount prefix and path below it, spelled as sent (design.md §3), pure.

Every adapter learns the same three things from its framework: the mount prefix and the path below
it, both decoded (WSGI ``SCRIPT_NAME``/``PATH_INFO``, ASGI ``root_path``/``path``, Django's script
name and ``path_info``), and, when the server keeps it, the raw request target (``RAW_URI``,
``REQUEST_URI``, ASGI ``raw_path``). :func:`client_paths` turns them into the percent-encoded
``(root_path, path)`` that :func:`~dpop_middleware.core.origin.rebuild_url` joins, by one rule:

* The raw target is the client's own spelling (``%2F`` stays one segment, ``%21`` stays ``%21``,
  dot segments stay), so it is used whenever it is the *same* path: it splits, at a literal ``/``,
  into a tail that decodes to exactly the path below the mount and a head that decodes to the mount
  prefix or a trailing part of it. Whatever part of the prefix the raw target does not cover is
  mount prefix too (a proxy stripped it, or an in-process fixer prepended it).
* Otherwise (no raw target, one in absolute form, one for another path, or one whose prefix is no
  part of the mount) the decoded path is percent-encoded again: a proof signed for an encoding we
  cannot see fails closed.

Characters that may not stand raw in a path (spaces, control characters, bytes beyond ASCII) are
percent-encoded in either case, so the URL never carries them; a decoded path that cannot be encoded
(a lone surrogate) raises ``UnicodeEncodeError``, which adapters answer with ``400 invalid_request``.
"""

from __future__ import annotations

import functools
import re
from typing import Literal
from urllib.parse import quote, unquote, unquote_to_bytes

from .htu import PATH_SAFE

__all__ = ["Decoding", "client_paths"]

#: How the server decoded the paths it hands the application, so that the raw target can be
#: compared with them: ``"latin-1"``, PEP 3333 strings (each byte one latin-1 character);
#: ``"utf-8"``, UTF-8 with U+FFFD for undecodable bytes (ASGI servers); ``"utf-8-escaped"``, UTF-8
#: with undecodable bytes percent-encoded again (Django's WSGI handler).
Decoding = Literal["latin-1", "utf-8", "utf-8-escaped"]

_RAW_SAFE = PATH_SAFE + "%"  # in a raw target the escapes are the client's: kept as sent
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _encode(decoded: str, decoding: Decoding) -> bytes:
    if decoding == "latin-1":
        try:
            return decoded.encode("latin-1")
        except UnicodeEncodeError:  # a server that ignores PEP 3333
            return decoded.encode("utf-8", "surrogateescape")
    return decoded.encode("utf-8")


def _decode(encoded: str, decoding: Decoding) -> str:
    if decoding == "latin-1":
        return unquote(encoded, encoding="latin-1")
    if decoding == "utf-8":
        return unquote(encoded, errors="replace")
    text = unquote_to_bytes(encoded).decode("utf-8", "surrogateescape")
    return _ESCAPED_BYTE.sub(lambda match: f"%{ord(match.group()) - 0xDC00:02X}", text)


def _raw_split(encoded: str, below: str, decoding: Decoding) -> int | None:
    """Where, at a literal ``/``, the tail of ``encoded`` that decodes to ``below`` starts."""
    if not below:
        return len(encoded)
    cut = len(encoded)
    while (cut := encoded.rfind("/", 0, cut)) >= 0:
        # Decoding is compositional at a literal "/" (never inside an escape or a UTF-8 sequence),
        # so each earlier cut decodes to something at least as long.
        decoded = _decode(encoded[cut:], decoding)
        if decoded == below:
            return cut
        if len(decoded) > len(below):
            return None
    return None


@functools.lru_cache(maxsize=2048)
def client_paths(prefix: str, below: str, raw: str | None, decoding: Decoding = "utf-8") -> tuple[str, str]:
    """``(root_path, path)``, percent-encoded as the client sent them, for :func:`rebuild_url`.

    ``prefix``: the decoded mount prefix (``""`` when none); ``below``: the decoded path below it;
    ``raw``: the path of the raw request target (bytes as latin-1 characters, query removed), or
    ``None``. Cached: an API sees the same few paths over and over.
    """
    if raw is not None and raw.startswith("/"):
        encoded = quote(_encode(raw, "latin-1"), safe=_RAW_SAFE)
        cut = _raw_split(encoded, below, decoding)
        if cut is not None:
            head = _decode(encoded[:cut], decoding)
            if prefix.endswith(head):
                uncovered = prefix[: len(prefix) - len(head)]
                return quote(_encode(uncovered, decoding), safe=PATH_SAFE) + encoded[:cut], encoded[cut:]
    return quote(_encode(prefix, decoding), safe=PATH_SAFE), quote(_encode(below, decoding), safe=PATH_SAFE)
