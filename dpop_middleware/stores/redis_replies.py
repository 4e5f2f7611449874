"""What Redis can answer to ``SET <key> 1 NX PX <ms>``, read straight off the wire by both stores.

Each answer is one line: ``+OK`` (written), ``$-1`` (RESP2 nil) or ``_`` (RESP3 null) when the key
was already there, or ``-CODE message`` when Redis refused (out of memory, read-only replica,
authentication lost). Anything else is no answer to our command.
"""

from __future__ import annotations

from ..core.errors import ReplayStoreUnavailable

__all__ = ["MAX_REPLY", "set_nx_outcome", "unexpected_reply"]

#: Longer than any answer to ``SET NX``, error messages included.
MAX_REPLY = 4096

_WRITTEN = b"+OK"
_NOT_WRITTEN = (b"$-1", b"_")


def set_nx_outcome(reply: bytes) -> bool | ReplayStoreUnavailable | None:
    """``reply`` (one line, CRLF removed): ``True``/``False``, the error to raise, or ``None`` if it is no answer."""
    if reply == _WRITTEN:
        return True
    if reply in _NOT_WRITTEN:
        return False
    if reply[:1] == b"-":
        # Only the error's code goes to the logs, never the rest of its text.
        code = reply[1:].split(b" ", 1)[0][:32].decode("ascii", "replace")
        return ReplayStoreUnavailable(diagnostics={"store_error": "ResponseError", "redis_error": code})
    return None


def unexpected_reply() -> ReplayStoreUnavailable:
    """The error for a reply that is no answer to ``SET NX``: the connection is out of step."""
    return ReplayStoreUnavailable(diagnostics={"store_error": "unexpected_reply"})
