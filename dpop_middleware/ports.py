"""The ports through which the verifier does I/O: replay stores and token validators.

Each is a small :class:`typing.Protocol`; implement it in your own class, or pass a plain callable
where a token validator is expected. Sync and async variants share method names: the verifier's
``averify`` awaits whatever an async implementation returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["AsyncReplayStore", "AsyncTokenValidator", "ReplayStore", "TokenValidator"]


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers proof identifiers for a while; the single operation must be atomic."""

    def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds. ``True`` if it was new, ``False`` if already present.

        Raise :class:`~dpop_middleware.ReplayStoreUnavailable` when the answer cannot be had
        (unreachable, timed out, full): the request is then refused with 503, never accepted.
        """
        ...


@runtime_checkable
class AsyncReplayStore(Protocol):
    """The asyncio flavour of :class:`ReplayStore`."""

    def add_if_absent(self, key: bytes, ttl: float) -> Awaitable[bool]: ...


@runtime_checkable
class TokenValidator(Protocol):
    """Turns an access token into its validated claims.

    Return the claims (a mapping; ``cnf.jkt`` carries the binding) or raise
    :class:`~dpop_middleware.InvalidTokenError` for a bad token and
    :class:`~dpop_middleware.TokenValidationUnavailable` when validation cannot be done now.
    Any other exception is treated as an outage (503), never as a valid token.

    The verifier remembers validated tokens until their ``exp``; a validator whose answers may
    change sooner (introspection: revocation) exposes ``result_cache_max_ttl`` (seconds, 0 = never
    cache) and the verifier's cache honours it.
    """

    def validate(self, token: str) -> Mapping[str, Any]: ...


@runtime_checkable
class AsyncTokenValidator(Protocol):
    """The asyncio flavour of :class:`TokenValidator`."""

    async def avalidate(self, token: str) -> Mapping[str, Any]: ...
