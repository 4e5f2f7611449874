"""The DPoP client flow of an httpx-style ``Auth`` plugin, written once for ``httpx`` and ``httpx2``.

``httpx2`` (the fork the ``mcp`` 2.x SDK is built on) has the same ``Auth`` protocol as ``httpx``
but its own classes: an ``httpx.Auth`` is refused by an ``httpx2.AsyncClient`` and the other way
round. :class:`DPoPAuthFlow` holds the whole flow (sign, send, retry once on a nonce challenge,
remember ``DPoP-Nonce``) and imports neither library; :class:`dpop_middleware.httpx_auth.DPoPAuth`
and :class:`dpop_middleware.httpx2_auth.DPoPAuth` only bind it to their library's ``Auth`` base.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, MutableMapping
from typing import Generic, Protocol, TypeVar

from .client import DPoPKey, NonceCache, ProofKey, nonce_to_retry, proof_headers

__all__ = ["DPoPAuthFlow"]


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...
    def get_list(self, key: str, split_commas: bool = False) -> list[str]: ...


class _Request(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> object: ...
    @property
    def headers(self) -> MutableMapping[str, str]: ...


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> _Headers: ...
    @property
    def content(self) -> bytes: ...
    async def aread(self) -> bytes: ...


RequestT = TypeVar("RequestT", bound=_Request)
ResponseT = TypeVar("ResponseT", bound=_Response)


def _advance(flow: Generator[RequestT, ResponseT, None], response: ResponseT | None) -> RequestT | None:
    """One step of a sync auth flow (the next request to send, ``None`` when done), for any thread."""
    try:
        return next(flow) if response is None else flow.send(response)
    except StopIteration:
        return None


class DPoPAuthFlow(Generic[RequestT, ResponseT]):
    """DPoP proofs, ``Authorization: DPoP`` and one nonce retry, for any httpx-compatible client.

    ``token`` may be changed later (``auth.token = new``) when it is refreshed. ``nonces`` is the
    per-origin nonce memory (a new one by default). Subclasses set :attr:`_response_not_read` to
    their library's ``ResponseNotRead`` and inherit from its ``Auth``.
    """

    #: The library's exception for a body that was not read (``httpx.ResponseNotRead``).
    _response_not_read: type[Exception] = Exception
    requires_response_body: bool

    def __init__(self, key: ProofKey, token: str | None = None, *, nonces: NonceCache | None = None) -> None:
        self.key = key
        self.token = token
        self.nonces = nonces if nonces is not None else NonceCache()

    @property
    def token(self) -> str | None:
        """The access token sent (``None``: token requests, signed without ``ath``)."""
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value
        # A token endpoint's nonce challenge is in the JSON body: read bodies only in that mode.
        self.requires_response_body = value is None

    def auth_flow(self, request: RequestT) -> Generator[RequestT, ResponseT, None]:
        """Sign, send, and retry once on a nonce challenge; written once for sync and async clients."""
        url = str(request.url)
        self._sign(request, self.nonces.get(url))
        response = yield request
        retry = self._observe(url, response)
        if retry is not None:
            self._sign(request, retry)  # a new proof: a new jti, the new nonce
            response = yield request
            self._observe(url, response)

    async def async_auth_flow(self, request: RequestT) -> AsyncGenerator[RequestT, ResponseT]:
        """:meth:`auth_flow` for async clients: the same steps, but a key that signs elsewhere
        (a PKCS#11 token, a signer process) signs in a worker thread, so the event loop never waits
        on it; an in-memory :class:`~dpop_middleware.client.DPoPKey` signs in place (microseconds)."""
        # anyio: a dependency of httpx and httpx2 alike (worker threads on asyncio and trio); imported
        # here so that this module needs neither.
        import anyio.to_thread

        flow = self.auth_flow(request)
        offload = not isinstance(self.key, DPoPKey)
        step = await anyio.to_thread.run_sync(_advance, flow, None) if offload else _advance(flow, None)
        while step is not None:
            response = yield step
            if self.requires_response_body:
                await response.aread()
            step = await anyio.to_thread.run_sync(_advance, flow, response) if offload else _advance(flow, response)

    def _sign(self, request: RequestT, nonce: str | None) -> None:
        request.headers.update(proof_headers(self.key, request.method, str(request.url), self.token, nonce=nonce))

    def _observe(self, url: str, response: ResponseT) -> str | None:
        header = response.headers.get("dpop-nonce")
        if header is not None:
            self.nonces.remember(url, header)
        body: bytes | None = None
        if response.status_code == 400 and self.token is None:
            # Only a token endpoint says use_dpop_nonce with a 400 (§8); a resource server uses 401.
            try:
                body = response.content
            except self._response_not_read:  # the token was cleared after the request went out
                body = None
        return nonce_to_retry(response.status_code, response.headers.get_list("www-authenticate"), header, body)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, token={'set' if self.token else None})"
