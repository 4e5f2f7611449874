"""DPoP for httpx: one :class:`DPoPAuth` for ``httpx.Client`` and ``httpx.AsyncClient`` alike.

::

    key = DPoPKey.generate()                                  # or PKCS11Key, SignerKey (docs: key custody)
    nonces = NonceCache()                                     # share it between the two plugins
    token = fetch_token("https://as.example/token", key, client_id="app", client_secret=secret,
                        scope="read", nonces=nonces)
    with httpx.Client(auth=DPoPAuth(key, token.access_token, nonces=nonces)) as client:
        client.get("https://api.example/me")

Every request gets a fresh proof (``htm`` = method, ``htu`` = URL without query and fragment,
``ath`` = hash of the token) and ``Authorization: DPoP <token>``. A nonce challenge (401
``use_dpop_nonce`` from a resource server, 400 ``use_dpop_nonce`` from a token endpoint) is retried
once with the server's nonce; the latest ``DPoP-Nonce`` of every response is remembered per origin
and used in the next proof, so a well-behaved server challenges a client once at most.

Without a token (``DPoPAuth(key)``) the plugin signs token requests: a proof without ``ath`` and no
``Authorization`` header (that one belongs to client authentication). A request whose body is a
stream cannot be retried (httpx raises :class:`httpx.StreamConsumed`): send bytes when the server
may demand a nonce.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

try:
    import httpx
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "httpx", "the httpx plugin needs httpx", "httpx")

import anyio.to_thread  # httpx's own dependency: worker threads on asyncio and trio alike

from .client import DPoPKey, NonceCache, ProofKey, TokenResponse, nonce_to_retry, parse_token_response, proof_headers
from .discovery import Discovery

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["DPoPAuth", "TokenRequestOptions", "adiscover", "afetch_token", "discover", "fetch_token"]


def _advance(
    flow: Generator[httpx.Request, httpx.Response, None], response: httpx.Response | None
) -> httpx.Request | None:
    """One step of a sync auth flow (the next request to send, ``None`` when done), for any thread."""
    try:
        return next(flow) if response is None else flow.send(response)
    except StopIteration:
        return None


class DPoPAuth(httpx.Auth):
    """httpx authentication with DPoP: proofs, ``Authorization: DPoP``, one nonce retry.

    ``token`` may be changed later (``auth.token = new``) when it is refreshed. ``nonces`` is the
    per-origin nonce memory (a new one by default).
    """

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

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign, send, and retry once on a nonce challenge; written once for sync and async clients."""
        url = str(request.url)
        self._sign(request, self.nonces.get(url))
        response = yield request
        retry = self._observe(url, response)
        if retry is not None:
            self._sign(request, retry)  # a new proof: a new jti, the new nonce
            response = yield request
            self._observe(url, response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """:meth:`auth_flow` for ``httpx.AsyncClient``: the same steps, but a key that signs elsewhere
        (a PKCS#11 token, a signer process) signs in a worker thread, so the event loop never waits
        on it; an in-memory :class:`~dpop_middleware.client.DPoPKey` signs in place (microseconds)."""
        flow = self.auth_flow(request)
        offload = not isinstance(self.key, DPoPKey)
        step: httpx.Request | None = (
            await anyio.to_thread.run_sync(_advance, flow, None) if offload else _advance(flow, None)
        )
        while step is not None:
            response = yield step
            if self.requires_response_body:
                await response.aread()
            step = await anyio.to_thread.run_sync(_advance, flow, response) if offload else _advance(flow, response)

    def _sign(self, request: httpx.Request, nonce: str | None) -> None:
        request.headers.update(proof_headers(self.key, request.method, str(request.url), self.token, nonce=nonce))

    def _observe(self, url: str, response: httpx.Response) -> str | None:
        header = response.headers.get("dpop-nonce")
        if header is not None:
            self.nonces.remember(url, header)
        body: bytes | None = None
        if response.status_code == 400 and self.token is None:
            # Only a token endpoint says use_dpop_nonce with a 400 (§8); a resource server uses 401.
            try:
                body = response.content
            except httpx.ResponseNotRead:  # the token was cleared after the request went out
                body = None
        return nonce_to_retry(response.status_code, response.headers.get_list("www-authenticate"), header, body)

    def __repr__(self) -> str:
        return f"DPoPAuth(key={self.key!r}, token={'set' if self.token else None})"


class TokenRequestOptions(TypedDict, total=False):
    """What :func:`fetch_token` and :func:`afetch_token` send besides the proof; every key is optional.

    ``client_id`` with ``client_secret``: ``client_secret_basic``; ``client_id`` alone: a public
    client, named in the body. ``grant_type`` defaults to ``client_credentials``; ``data`` adds form
    fields (``code``, ``redirect_uri``, ``refresh_token``... for other grants). ``nonces`` is the
    per-origin nonce memory to share with :class:`DPoPAuth`.
    """

    client_id: str | None
    client_secret: str | None
    scope: str | None
    grant_type: str
    data: Mapping[str, str] | None
    nonces: NonceCache | None


def _token_request(key: ProofKey, options: TokenRequestOptions) -> dict[str, Any]:
    unknown = options.keys() - TokenRequestOptions.__annotations__.keys()
    if unknown:  # what an explicit signature would refuse, so a misspelt option is never ignored
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    client_id, client_secret = options.get("client_id"), options.get("client_secret")
    scope = options.get("scope")
    form = {"grant_type": options.get("grant_type", "client_credentials")}
    headers = {"Accept": "application/json"}
    if client_secret is not None:
        if client_id is None:
            raise ValueError("client_secret needs client_id")
        # client_secret_basic (RFC 6749 §2.3.1): both parts form-urlencoded before base64.
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    elif client_id is not None:
        form["client_id"] = client_id  # a public client identifies itself in the body
    if scope is not None:
        form["scope"] = scope
    form.update(options.get("data") or {})
    return {"data": form, "headers": headers, "auth": DPoPAuth(key, nonces=options.get("nonces"))}


def fetch_token(
    token_endpoint: str,
    key: ProofKey,
    *,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
    **options: Unpack[TokenRequestOptions],
) -> TokenResponse:
    """Obtain a DPoP-bound access token (client credentials by default) with a proof signed by ``key``.

    ``options`` are those of :class:`TokenRequestOptions` (``client_id``, ``client_secret``,
    ``scope``, ``grant_type``, ``data``, ``nonces``). Raises
    :class:`~dpop_middleware.client.TokenRequestError` if the server refuses or issues a token that
    is not DPoP-bound.
    """
    params = _token_request(key, options)
    if client is not None:
        response = client.post(token_endpoint, timeout=timeout, **params)
    else:
        with httpx.Client() as own:
            response = own.post(token_endpoint, timeout=timeout, **params)
    return parse_token_response(response.status_code, response.content)


async def afetch_token(
    token_endpoint: str,
    key: ProofKey,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = 10.0,
    **options: Unpack[TokenRequestOptions],
) -> TokenResponse:
    """Asyncio twin of :func:`fetch_token`."""
    params = _token_request(key, options)
    if client is not None:
        response = await client.post(token_endpoint, timeout=timeout, **params)
    else:
        async with httpx.AsyncClient() as own:
            response = await own.post(token_endpoint, timeout=timeout, **params)
    return parse_token_response(response.status_code, response.content)


def _discovery_http(timeout: float) -> Any:
    from .discovery import MAX_DOCUMENT_BYTES
    from .tokens._http import HTTPSettings

    return HTTPSettings(timeout=timeout, max_body_bytes=MAX_DOCUMENT_BYTES, user_agent="dpop-middleware discovery")


def _discovery_failed(exc: Exception) -> Exception:
    """The transport's failure (our 503 type on the server side) as the client's :class:`DiscoveryError`."""
    from .discovery import DiscoveryError

    reason = getattr(exc, "reason", "")
    if reason.endswith("too_large"):
        return DiscoveryError("metadata_too_large", "a discovery response was larger than the cap")
    return DiscoveryError("unreachable", f"a discovery request failed ({reason})")


def discover(
    resource: str, *, client: httpx.Client | None = None, timeout: float = 5.0, allow_insecure_http: bool = False
) -> Discovery:
    """Find ``resource``'s authorization server (RFC 9728, then RFC 8414) with ``client`` (default: a
    fresh one that follows no redirects). Raises :class:`~dpop_middleware.discovery.DiscoveryError`.

    ``allow_insecure_http``: accept plain ``http`` off loopback (never in production).
    """
    from .core.errors import TokenValidationUnavailable
    from .discovery import discovery_flow
    from .tokens._http import SyncHTTP, run_sync

    http = SyncHTTP(_discovery_http(timeout), client)
    try:
        return run_sync(discovery_flow(resource, allow_insecure_http=allow_insecure_http), http)
    except TokenValidationUnavailable as exc:
        raise _discovery_failed(exc) from None
    finally:
        http.close()


async def adiscover(
    resource: str, *, client: httpx.AsyncClient | None = None, timeout: float = 5.0, allow_insecure_http: bool = False
) -> Discovery:
    """:func:`discover` with an ``httpx.AsyncClient``."""
    from .core.errors import TokenValidationUnavailable
    from .discovery import discovery_flow
    from .tokens._http import AsyncHTTP, run_async

    http = AsyncHTTP(_discovery_http(timeout), client)
    try:
        return await run_async(discovery_flow(resource, allow_insecure_http=allow_insecure_http), http)
    except TokenValidationUnavailable as exc:
        raise _discovery_failed(exc) from None
    finally:
        await http.aclose()
