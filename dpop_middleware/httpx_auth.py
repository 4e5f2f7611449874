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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

try:
    import httpx
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "httpx", "the httpx plugin needs httpx", "httpx")

from .auth_flow import DPoPAuthFlow
from .client import NonceCache, ProofKey, TokenResponse, parse_token_response
from .discovery import Discovery

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["DPoPAuth", "TokenRequestOptions", "adiscover", "afetch_token", "discover", "fetch_token"]


class DPoPAuth(DPoPAuthFlow[httpx.Request, httpx.Response], httpx.Auth):
    """httpx authentication with DPoP: proofs, ``Authorization: DPoP``, one nonce retry.

    ``token`` may be changed later (``auth.token = new``) when it is refreshed. ``nonces`` is the
    per-origin nonce memory (a new one by default). The flow is :class:`~dpop_middleware.auth_flow.DPoPAuthFlow`,
    shared with :class:`dpop_middleware.httpx2_auth.DPoPAuth` (for ``httpx2`` clients, e.g. the ``mcp`` SDK's).
    """

    _response_not_read = httpx.ResponseNotRead


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


def discover(
    resource: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 5.0,
    allow_insecure_http: bool = False,
    trusted_issuers: Iterable[str] | None = None,
) -> Discovery:
    """Find ``resource``'s authorization server (RFC 9728, then RFC 8414) with ``client`` (default: a
    fresh one that follows no redirects). Raises :class:`~dpop_middleware.discovery.DiscoveryError`.

    ``allow_insecure_http``: accept plain ``http`` off loopback (never in production).
    ``trusted_issuers``: the authorization servers this client may be sent to; give them whenever
    the client holds credentials (see :func:`~dpop_middleware.discovery.discovery_flow`).
    """
    from .core.errors import TokenValidationUnavailable
    from .discovery import discovery_failure, discovery_flow, discovery_http
    from .tokens._http import SyncHTTP, run_sync

    http = SyncHTTP(discovery_http(timeout), client)
    try:
        return run_sync(
            discovery_flow(resource, allow_insecure_http=allow_insecure_http, trusted_issuers=trusted_issuers), http
        )
    except TokenValidationUnavailable as exc:
        raise discovery_failure(exc) from None
    finally:
        http.close()


async def adiscover(
    resource: str,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = 5.0,
    allow_insecure_http: bool = False,
    trusted_issuers: Iterable[str] | None = None,
) -> Discovery:
    """:func:`discover` with an ``httpx.AsyncClient``."""
    from .core.errors import TokenValidationUnavailable
    from .discovery import discovery_failure, discovery_flow, discovery_http
    from .tokens._http import AsyncHTTP, run_async

    http = AsyncHTTP(discovery_http(timeout), client)
    try:
        return await run_async(
            discovery_flow(resource, allow_insecure_http=allow_insecure_http, trusted_issuers=trusted_issuers), http
        )
    except TokenValidationUnavailable as exc:
        raise discovery_failure(exc) from None
    finally:
        await http.aclose()
