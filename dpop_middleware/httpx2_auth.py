"""DPoP for ``httpx2`` clients, such as the one the ``mcp`` 2.x SDK's Streamable HTTP client uses.

::

    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    auth = DPoPAuth(key, token.access_token, nonces=nonces)   # the same key, token and nonces
    async with httpx2.AsyncClient(auth=auth) as http:
        async with Client(streamable_http_client(url, http_client=http)) as mcp:
            await mcp.list_tools()

The same flow as :class:`dpop_middleware.httpx_auth.DPoPAuth` (it is
:class:`~dpop_middleware.auth_flow.DPoPAuthFlow`), bound to ``httpx2.Auth``: httpx2 refuses an
``httpx.Auth``. No process-wide ``httpx2.alias_httpx()`` is needed (httpx2 says libraries must
never call it), so ``httpx`` and ``httpx2`` clients can live side by side in one process.
"""

from __future__ import annotations

try:
    import httpx2
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "httpx2", "the httpx2 plugin needs httpx2", "mcp")

from .auth_flow import DPoPAuthFlow

__all__ = ["DPoPAuth"]


class DPoPAuth(DPoPAuthFlow[httpx2.Request, httpx2.Response], httpx2.Auth):
    """httpx2 authentication with DPoP: proofs, ``Authorization: DPoP``, one nonce retry.

    ``DPoPAuth(key, token, nonces=...)`` as :class:`dpop_middleware.httpx_auth.DPoPAuth`.
    """

    _response_not_read = httpx2.ResponseNotRead
